"""The TokenSelect op alone as an ONNX graph, shared by the op tests and the TensorRT plugin tests."""

from __future__ import annotations

import onnx
import torch

from earlytom.ops import TOKEN_SELECT
from earlytom.ops.onnx_function import ONNX_OPSET, attach_token_select_function, token_select_translation

P = 196  # pooled tokens per frame


class OnlySelect(torch.nn.Module):
    def forward(self, features, scores, frame_kind, budget, token_slots):  # type: ignore[no-untyped-def]
        return torch.ops.earlytom.token_select(features, scores, frame_kind, budget, token_slots)


def export_select(example: tuple[torch.Tensor, ...]) -> onnx.ModelProto:
    """The op alone as ONNX (node + function body), frames and N dynamic."""
    frames = torch.export.Dim("frames", min=1, max=4096)
    selected = torch.export.Dim("selected", min=1, max=4096 * P)
    translation = {torch.ops.earlytom.token_select.default: token_select_translation()}
    program = torch.onnx.export(
        OnlySelect(), example, input_names=list(TOKEN_SELECT.inputs), output_names=list(TOKEN_SELECT.outputs),
        dynamic_shapes=({0: frames}, {0: frames}, {0: frames}, None, {0: selected}), opset_version=ONNX_OPSET,
        dynamo=True, custom_translation_table=translation,
    )  # fmt: skip
    return attach_token_select_function(program.model_proto)
