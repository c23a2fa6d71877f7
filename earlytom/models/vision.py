"""The vision side of LLaVA-OneVision alone: SigLIP tower, projector, image_newline, pooling.

Exporting engines needs only these; `load_vision_side` reads just their tensors from a
checkpoint, so exporting the 7B model's vision side never materialises its language model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from earlytom.errors import ModelError


def feature_layer_count(num_layers: int, vision_feature_layer: int) -> int:
    """How many encoder layers produce HF's `hidden_states[vision_feature_layer]` (index 0 = embeddings)."""
    index = vision_feature_layer if vision_feature_layer >= 0 else num_layers + 1 + vision_feature_layer
    if not 0 < index <= num_layers:
        raise ValueError(f"vision_feature_layer={vision_feature_layer} does not exist in {num_layers} layers")
    return index


POOLINGS = ("bilinear", "average")  # LLaVA-NeXT's mm_spatial_pool_mode values we run (stride 2)


def pooled_side(grid: int, pooling: str = "bilinear") -> int:
    """Side of the pooled grid: bilinear resizes to ceil(grid/2) (HF's `apply_pooling`), average
    pooling with stride 2 floors (LLaVA-NeXT's `avg_pool2d`): 27 -> 14 or 13."""
    if pooling not in POOLINGS:
        raise ModelError(
            f"mm_spatial_pool_mode={pooling!r} is not supported: use one of {', '.join(POOLINGS)}"
        )
    return math.ceil(grid / 2) if pooling == "bilinear" else grid // 2


def pool_grid(features: torch.Tensor, grid: int, pooling: str = "bilinear") -> torch.Tensor:
    """(T, S, C) on a grid×grid raster -> (T, P, C) on the pooled grid (`pooled_side`)."""
    frames, _, width = features.shape
    side = pooled_side(grid, pooling)
    image = features.view(frames, grid, grid, width).permute(0, 3, 1, 2)  # (T, C, g, g)
    if pooling == "average":
        image = nn.functional.avg_pool2d(image, 2)  # (T, C, side, side)
    else:
        image = nn.functional.interpolate(image, size=[side, side], mode="bilinear")
    return image.permute(0, 2, 3, 1).reshape(frames, side * side, width)  # (T, P, C)


class VisionSide(nn.Module):
    """HF modules composed: SigLIP embeddings and layers, the multimodal projector, image_newline."""

    def __init__(self, vision_tower: Any, projector: nn.Module, image_newline: torch.Tensor, hf_config: Any):
        super().__init__()
        if not isinstance(hf_config.vision_feature_layer, int):
            raise ModelError("models that concatenate several vision feature layers are not supported")
        if hf_config.vision_feature_select_strategy != "full":
            # LLaVA-OneVision's SigLIP has no CLS token: every checkpoint uses all 729 tokens.
            raise ModelError(
                f"vision_feature_select_strategy={hf_config.vision_feature_select_strategy!r} is not "
                "supported: EarlyTom needs the full 27×27 token grid ('full')"
            )
        self.embeddings: Any = vision_tower.embeddings  # SiglipVisionEmbeddings
        self.layers: Any = vision_tower.encoder.layers  # ModuleList of SiglipEncoderLayer
        self.projector = projector
        self.image_newline = image_newline  # (C,)
        vision = hf_config.vision_config
        self.grid = vision.image_size // vision.patch_size  # 27
        self.image_size = vision.image_size
        self.num_layers = feature_layer_count(len(self.layers), hf_config.vision_feature_layer)
        self.pooling = str(getattr(hf_config, "mm_spatial_pool_mode", None) or "bilinear")
        pooled_side(self.grid, self.pooling)  # refuses an unknown mode here, not at the first video
        self.hf_config = hf_config

    @classmethod
    def from_llava(cls, llava: Any) -> VisionSide:
        """Share the modules of a loaded LlavaOnevisionModel (the `.model` of the generation class)."""
        return cls(llava.vision_tower, llava.multi_modal_projector, llava.image_newline, llava.config)

    @property
    def hidden_size(self) -> int:
        return int(self.layers[0].self_attn.embed_dim)  # D

    @property
    def tokens_per_frame(self) -> int:
        return self.grid * self.grid  # S

    @property
    def pooled_tokens_per_frame(self) -> int:
        return pooled_side(self.grid, self.pooling) ** 2  # P

    @property
    def newline_tokens(self) -> int:
        return 1  # one image_newline after the video

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """(T, S, C) projected features -> (T, P, C) pooled tokens."""
        return pool_grid(features, self.grid, self.pooling)

    def pool_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """(T, S) received attention -> (T, P) fp32, pooled like the features."""
        return pool_grid(scores.float()[..., None], self.grid, self.pooling).squeeze(-1)


def build_vision_side(hf_config: Any) -> VisionSide:
    """Random-weight vision side of a LlavaOnevisionConfig (HF's own init)."""
    from transformers import AutoModel
    from transformers.models.llava_onevision.modeling_llava_onevision import (
        LlavaOnevisionMultiModalProjector,
    )

    tower = AutoModel.from_config(hf_config.vision_config)
    projector = LlavaOnevisionMultiModalProjector(hf_config)
    width = hf_config.text_config.hidden_size
    newline = nn.Parameter(torch.randn(width) / math.sqrt(width))
    return VisionSide(tower, projector, newline, hf_config).eval()


@dataclass(frozen=True)
class LoadedVision:
    vision: VisionSide  # fp32, eval mode, on the CPU
    source: str  # a folder, or "random weights"
    fingerprint: str  # of the checkpoint (earlytom.models.fingerprint)


def load_vision_side(
    name_or_path: str, *, random_weights: bool = False, cache_dir: Path | None = None
) -> LoadedVision:
    """The vision side (fp32, CPU) of a registered LLaVA model or a local checkpoint folder."""
    from earlytom.models.fingerprint import fingerprint_tensors, random_fingerprint
    from earlytom.models.registry import MODELS, architecture_config, family_of, resolve_checkpoint

    spec = MODELS.get(name_or_path)
    if spec is not None and not spec.built_locally and random_weights:
        with torch.random.fork_rng():  # seeded: repeated exports hash alike; the caller's RNG is untouched
            torch.manual_seed(0)
            vision = build_vision_side(architecture_config(spec.name))
        return LoadedVision(vision, "random weights", random_fingerprint(spec.name, "vision side"))
    family = family_of(name_or_path)
    folder = resolve_checkpoint(name_or_path, cache_dir=cache_dir)
    state = read_vision_tensors(folder)
    return LoadedVision(_from_folder(folder, state, family), str(folder), fingerprint_tensors(state))


def vision_side_from_folder(folder: Path) -> VisionSide:
    """The vision side (fp32, CPU) of a checkpoint folder, without fingerprinting its tensors
    (a server building its encoder needs the weights, not their identity)."""
    from earlytom.models.registry import folder_family

    return _from_folder(folder, read_vision_tensors(folder), folder_family(folder))


def llava_config(folder: Path, family: Any) -> Any:
    """The LlavaOnevisionConfig of a llava-hf or LLaVA-NeXT folder, with the family's pooling."""
    from transformers import LlavaOnevisionConfig

    from earlytom.models.llava_next import is_llava_next, llava_next_config
    from earlytom.models.loading import apply_pooling

    if is_llava_next(folder):
        hf_config = llava_next_config(folder)
    else:
        try:
            hf_config = LlavaOnevisionConfig.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"'{folder}' has no readable LLaVA-OneVision config.json: {exc}") from exc
    apply_pooling(hf_config, family, folder)
    return hf_config


def _from_folder(folder: Path, state: dict[str, torch.Tensor], family: Any) -> VisionSide:
    if family.adapter != "llava":
        raise ModelError(f"'{folder}' is a {family.name} checkpoint: its vision side is not a LLaVA one")
    vision = build_vision_side(llava_config(folder, family))
    expected = {name for name, _ in vision.named_parameters() if _needed(name, vision.num_layers)}
    missing = sorted(expected - state.keys())
    if missing:
        raise ModelError(
            f"checkpoint '{folder}' lacks vision tensors, e.g. {missing[0]}: is it LLaVA-OneVision?"
        )
    vision.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return vision.float().eval()


def _needed(name: str, num_layers: int) -> bool:
    """Tensors the compressing encoder uses (layers past the feature layer and post-norm are not)."""
    if name.startswith("layers."):
        return int(name.split(".")[1]) < num_layers
    return name.startswith(("embeddings.", "projector.", "image_newline"))


def read_vision_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Vision-side tensors of a safetensors checkpoint, renamed to VisionSide's names."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = set(json.loads(index.read_text())["weight_map"].values())
        files = [folder / name for name in sorted(names)]
    if not files:
        raise ModelError(f"'{folder}' has no .safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a dict
                name = _vision_name(key)
                if name is not None:
                    state[name] = handle.get_tensor(key)
    return state


def _vision_name(key: str) -> str | None:
    """Checkpoint key -> VisionSide name; handles the llava-hf layout, transformers 5's and LLaVA-NeXT's."""
    if key.startswith(("model.vision_tower.vision_tower.", "model.mm_projector.")):
        from earlytom.models.llava_next import llava_next_vision_name

        return llava_next_vision_name(key)
    key = key.removeprefix("model.")
    if key.startswith("vision_tower."):
        rest = key.removeprefix("vision_tower.").removeprefix("vision_model.")
        if rest.startswith("encoder.layers."):
            return rest.removeprefix("encoder.")
        return rest if rest.startswith("embeddings.") else None
    if key.startswith("multi_modal_projector."):
        return "projector." + key.removeprefix("multi_modal_projector.")
    return "image_newline" if key == "image_newline" else None
