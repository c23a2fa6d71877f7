"""The custom op `earlytom::token_select`: one spec, its torch reference, fake and ONNX forms."""

from earlytom.ops.token_select import TOKEN_SELECT, TokenSelectSpec, token_select

__all__ = ["TOKEN_SELECT", "TokenSelectSpec", "token_select"]
