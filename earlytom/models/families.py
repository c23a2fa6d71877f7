"""Model families: what differs between the Video-LLMs EarlyTom runs on, declared once.

A family names its adapter (how a checkpoint of it loads, is preprocessed, prompted and positioned),
the config architectures it reads, its default frame count and its presets. The registry
(`earlytom.models.registry`) maps model ids onto families. Importing this module imports no model
library.
"""

from __future__ import annotations

from dataclasses import dataclass

from earlytom.config import FAMILY_PRESETS


@dataclass(frozen=True)
class ModelFamily:
    """One family of Video-LLMs that share an adapter.

    adapter: "llava" (SigLIP + projector + pooling + one newline, Qwen2 LLM; both checkpoint
        layouts) or "qwen-vl" (Qwen2.5-VL's windowed ViT, patch merger and M-RoPE LLM).
    architectures: the `architectures` of a config.json this family loads.
    frames: frames sampled by default (the authors' scripts).
    pooling: LLaVA's spatial pooling when a checkpoint does not say ("bilinear" or "average").
    presets: the key of this family's (task, retention) -> (tau, prune layers) table in
        `earlytom.config.FAMILY_PRESETS`.
    """

    name: str
    adapter: str
    architectures: tuple[str, ...]
    frames: int
    presets: str
    pooling: str = "bilinear"

    def __post_init__(self) -> None:
        if self.presets not in FAMILY_PRESETS:
            raise ValueError(f"family {self.name}: no preset table {self.presets!r}")


LLAVA_ONEVISION = ModelFamily(
    "llava-onevision",
    adapter="llava",
    architectures=("LlavaOnevisionForConditionalGeneration", "LlavaQwenForCausalLM"),
    frames=32,
    presets="llava-onevision",
)
LLAVA_VIDEO = ModelFamily(
    "llava-video",
    adapter="llava",
    architectures=("LlavaQwenForCausalLM", "LlavaOnevisionForConditionalGeneration"),
    frames=64,
    presets="llava-video",
    pooling="average",  # lmms-eval's LLaVA-Video runs pass mm_spatial_pool_mode=average
)
QWEN25_VL = ModelFamily(
    "qwen2.5-vl",
    adapter="qwen-vl",
    architectures=("Qwen2_5_VLForConditionalGeneration",),
    frames=32,
    presets="qwen2.5-vl",
)
FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (LLAVA_ONEVISION, LLAVA_VIDEO, QWEN25_VL)}


def family_of_architecture(
    architectures: list[str] | tuple[str, ...], model_type: str = ""
) -> ModelFamily | None:
    """The family that loads a config.json with these `architectures` (LLaVA-OneVision first)."""
    if "Qwen2_5_VLForConditionalGeneration" in architectures or model_type == "qwen2_5_vl":
        return QWEN25_VL
    llava = ("LlavaOnevisionForConditionalGeneration", "LlavaQwenForCausalLM")
    if any(a in llava for a in architectures) or model_type in ("llava_onevision", "llava_qwen", "llava"):
        return LLAVA_ONEVISION
    return None
