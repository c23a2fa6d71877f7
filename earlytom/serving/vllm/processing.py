"""The frontend half of the plugin: span checks and the video route's placeholder count.

vLLM runs this in its API server, before a request reaches the engine: what is refused here is a
400 for that request, and the engine never sees it.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch
from vllm.model_executor.models.llava_onevision import (
    LlavaOnevisionMultiModalProcessor,
    LlavaOnevisionProcessingInfo,
)
from vllm.multimodal.inputs import MultiModalFieldConfig
from vllm.multimodal.parse import MultiModalDataParser

from earlytom.compression import exact_count
from earlytom.config import EarlyTomConfig
from earlytom.serving.vllm.settings import serving_config

SPAN_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_span(span: torch.Tensor, field: str = "image_embeds") -> None:
    """A visual span is (N + 1, C) or (1, N + 1, C) floats, N + 1 >= 1, all finite (width: vLLM's check)."""
    if span.dtype not in SPAN_DTYPES:
        names = ", ".join(str(dtype).removeprefix("torch.") for dtype in SPAN_DTYPES)
        raise ValueError(
            f"{field} has dtype {str(span.dtype).removeprefix('torch.')}: a visual span is {names}"
        )
    if span.ndim not in (2, 3) or span.shape[-2] == 0:
        raise ValueError(f"{field} has shape {tuple(span.shape)}: a visual span is (N + 1, C) rows")
    if not bool(torch.isfinite(span).all()):
        raise ValueError(f"{field} holds NaN or infinite values")


class SpanDataParser(MultiModalDataParser):
    """vLLM's parser, plus the dtype, length and finiteness checks of a visual span."""

    def _parse_image_data(self, data: Any) -> Any:
        _check_spans(self, data, "image_embeds")
        return super()._parse_image_data(data)

    def _parse_video_data(self, data: Any) -> Any:
        _check_spans(self, data, "video_embeds")
        return super()._parse_video_data(data)


def _check_spans(parser: MultiModalDataParser, data: Any, field: str) -> None:
    if parser.is_embeddings(data):
        for span in data if isinstance(data, list) else [data]:
            check_span(span, field)


class EarlyTomMultiModalProcessor(LlavaOnevisionMultiModalProcessor):
    """LLaVA-OneVision's processor, plus `video_embeds`: a span in the video's own place, so the
    prompt is token for token the one `earlytom run` builds (stock vLLM has no such field)."""

    def _get_mm_fields_config(self, hf_inputs: Any, hf_processor_mm_kwargs: Any) -> Any:
        fields = dict(super()._get_mm_fields_config(hf_inputs, hf_processor_mm_kwargs))
        return fields | {"video_embeds": MultiModalFieldConfig.batched("video")}


class EarlyTomProcessingInfo(LlavaOnevisionProcessingInfo):
    """LLaVA-OneVision's processing info; with an EarlyTom setting, a video of F frames takes
    N*(r, F) + 1 placeholders, the exact budget's count (DESIGN §9)."""

    @cached_property
    def earlytom_config(self) -> EarlyTomConfig | None:
        return serving_config(self.get_hf_config())

    def get_num_video_tokens(self, *, image_width: int, image_height: int, num_frames: int) -> int:
        config = self.earlytom_config
        if config is None:
            return int(
                super().get_num_video_tokens(
                    image_width=image_width, image_height=image_height, num_frames=num_frames
                )
            )
        per_frame = self._get_num_frame_tokens(image_width=image_width, image_height=image_height)
        return exact_count(per_frame, num_frames, retention=config.retention) + 1  # + the newline

    def get_data_parser(self) -> MultiModalDataParser:
        return SpanDataParser(
            expected_hidden_size=self._get_expected_hidden_size(),
            allow_missing_mm_embeddings=self.allow_missing_mm_embeddings,
        )
