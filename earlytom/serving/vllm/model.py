"""EarlyTomLlavaOnevisionForConditionalGeneration: vLLM's LLaVA-OneVision at two seams.

Route 1 (embeddings in): a visual span of any length is a `video_embeds` (or `image_embeds`)
item; vLLM's schema has no dynamic length, so two spans of different lengths in one batch killed
the engine, and LLaVA-OneVision has no `video_embeds` field at all.
Route 2 (video in): with an EarlyTom setting, videos run the project's compressing encoder (the
torch vision path, exact budget), because vLLM's SigLIP exposes no attention probabilities.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from vllm.config import VllmConfig
from vllm.model_executor.models.llava_onevision import (
    LlavaOnevisionDummyInputsBuilder,
    LlavaOnevisionForConditionalGeneration,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.utils.tensor_schema import TensorSchema, TensorShape

from earlytom.serving.vllm.processing import EarlyTomMultiModalProcessor, EarlyTomProcessingInfo
from earlytom.serving.vllm.settings import serving_config
from earlytom.vision_path import VisionPath


class VisualSpanInputs(TensorSchema):
    """Dimensions: bn spans, ifs rows each (N + 1, differs per span), hs the LLM width."""

    type: Literal["image_embeds", "video_embeds"] = "image_embeds"
    data: Annotated[torch.Tensor | list[torch.Tensor], TensorShape("bn", "ifs", "hs", dynamic_dims={"ifs"})]


@MULTIMODAL_REGISTRY.register_processor(
    EarlyTomMultiModalProcessor,
    info=EarlyTomProcessingInfo,
    dummy_inputs=LlavaOnevisionDummyInputsBuilder,
)
class EarlyTomLlavaOnevisionForConditionalGeneration(LlavaOnevisionForConditionalGeneration):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self.earlytom_config = serving_config(self.config)  # a bad setting fails the start-up here
        self._checkpoint = (vllm_config.model_config.model, vllm_config.model_config.revision)
        self._vision_path: VisionPath | None = None

    def _parse_and_validate_image_input(self, **kwargs: object) -> Any:
        spans = kwargs.get("image_embeds")
        if spans is not None and kwargs.get("pixel_values") is None:
            return VisualSpanInputs(type="image_embeds", data=spans)
        return super()._parse_and_validate_image_input(**kwargs)

    def _parse_and_validate_video_input(self, **kwargs: object) -> Any:
        spans = kwargs.get("video_embeds")
        if spans is not None and kwargs.get("pixel_values_videos") is None:
            return VisualSpanInputs(type="video_embeds", data=spans)
        return super()._parse_and_validate_video_input(**kwargs)

    def _process_image_input(self, image_input: Any) -> Any:
        if isinstance(image_input, VisualSpanInputs):
            return self._spans(image_input)
        return super()._process_image_input(image_input)

    def _process_video_pixels(self, inputs: Any) -> Any:
        if isinstance(inputs, VisualSpanInputs):
            return self._spans(inputs)
        if self.earlytom_config is None:
            return super()._process_video_pixels(inputs)
        path = self._earlytom_path()
        dtype = self.image_newline.dtype
        return [path.run(video.to(dtype)).embeds for video in inputs["pixel_values_videos"]]  # (N*+1, C)

    def _spans(self, inputs: VisualSpanInputs) -> list[torch.Tensor]:
        """One (N + 1, C) tensor per span, whatever its length, in the model's dtype."""
        dtype = self.image_newline.dtype
        return [span.reshape(-1, span.shape[-1]).to(dtype) for span in inputs["data"]]

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        loaded = super().load_weights(weights)
        if self.earlytom_config is not None:
            self._earlytom_path()
        return loaded

    def _earlytom_path(self) -> VisionPath:
        """The compressing encoder, read from the checkpoint's files (our own SigLIP modules)."""
        if self._vision_path is None:
            from earlytom.compression import tie_band_for
            from earlytom.models.vision import vision_side_from_folder
            from earlytom.vision_path import torch_vision_path

            assert self.earlytom_config is not None  # only called with a setting
            dtype = self.image_newline.dtype
            vision = vision_side_from_folder(_checkpoint_folder(*self._checkpoint))
            vision = vision.to(device=self.image_newline.device, dtype=dtype)
            # The precision's tie band, as EarlyTomPipeline picks it: the two agree on near-ties.
            band = tie_band_for(dtype)
            self._vision_path = torch_vision_path(vision, self.earlytom_config, tie_band=band)
        return self._vision_path


def _checkpoint_folder(model: str, revision: str | None) -> Path:
    """vLLM's --model as a local folder: itself, or its snapshot in the Hugging Face cache."""
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model, revision=revision, local_files_only=True))
