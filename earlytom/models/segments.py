"""The vision path cut into stages (DESIGN §4): one nn.Module per stage, declared I/O per stage.

Stages, in order: encoder segments (SigLIP layers up to each merge point), the head (remaining
layers and the projector) and the select stage (bilinear pooling, TokenSelect, the newline). The
torch backend runs these modules eagerly and the exporter traces the very same modules, so every
backend executes one definition and every stage boundary means the same work on every backend.
Between encoder segments a planner (`earlytom.vision_path.planners`) runs, whatever executed them.

Every tensor a stage reads or writes is declared here once (`TensorSpec`): the exporter, the
validator, the engine builder's profiles, the profiler and every executor read these specs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import earlytom.ops  # noqa: F401  registers torch.ops.earlytom.token_select
from earlytom.compression.selection import TokenBudget, reconcile_mask, selection_mask
from earlytom.config import EarlyTomConfig
from earlytom.models.attention import layer_with_received_attention
from earlytom.models.vision import VisionSide

FRAMES, SELECTED = "frames", "selected"  # the two dynamic axes
ACTIVATION = "activation"  # the graph's precision (float16 or float32)
METHODS = ("earlytom", "post-encoder", "stock")


@dataclass(frozen=True)
class TensorSpec:
    """One named stage input or output: its element type and its dynamic first axis."""

    name: str
    dtype: str  # ACTIVATION, "float32" or "int64"
    rank: int
    axis: str | None  # FRAMES, SELECTED, or None for a static shape


PIXELS = TensorSpec("pixel_values", ACTIVATION, 4, FRAMES)  # (T, 3, H, W)
HIDDEN = TensorSpec("hidden", ACTIVATION, 3, FRAMES)  # (T, S, D)
HIDDEN_OUT = TensorSpec("hidden_out", ACTIVATION, 3, FRAMES)  # ONNX forbids an input and output of one name
SCORES = TensorSpec("scores", "float32", 2, FRAMES)  # (T, S) received attention
FEATURES = TensorSpec("features", ACTIVATION, 3, FRAMES)  # (T, S, C) projected
FRAME_KIND = TensorSpec("frame_kind", "int64", 1, FRAMES)  # (T,) 0 dynamic, 1 static
BUDGET = TensorSpec("budget", "int64", 1, None)  # (2,) k_d, k_s
TOKEN_SLOTS = TensorSpec("token_slots", "int64", 1, SELECTED)  # (N,) only its length is read
VIDEO_TOKENS = TensorSpec("video_tokens", ACTIVATION, 2, SELECTED)  # (N + 1, C), newline last
TOKEN_INDEX = TensorSpec("token_index", "int64", 2, SELECTED)  # (N, 2) (frame, pooled position)
SELECT_INPUTS = (FEATURES, SCORES, FRAME_KIND, BUDGET, TOKEN_SLOTS)


@dataclass(frozen=True)
class SegmentSpec:
    """One stage: its kind, the encoder layers it runs [first, stop), and its declared I/O."""

    name: str
    kind: str  # "encoder", "head" or "select"
    first_layer: int
    stop_layer: int  # exclusive
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    @property
    def scores_out(self) -> bool:
        return SCORES in self.outputs

    def describe(self) -> str:
        """What the stage runs, for progress lines: "layers 0-10", "layers 24-25, projector"..."""
        layers = self.layers
        parts = [f"layers {layers[0]}-{layers[1]}"] if layers else []
        parts += {"head": ["projector"], "select": ["pooling, TokenSelect, newline"]}.get(self.kind, [])
        return ", ".join(parts)

    @property
    def layers(self) -> tuple[int, int] | None:
        """Inclusive [first, last] encoder layers, None when the stage runs no layer."""
        return (self.first_layer, self.stop_layer - 1) if self.stop_layer > self.first_layer else None


def plan_segments(
    config: EarlyTomConfig, num_layers: int, method: str = "earlytom"
) -> tuple[SegmentSpec, ...]:
    """The stages of a method: encoder segments cut at the merge points, then head and select.

    earlytom cuts after each prune layer (the last one also scores); post-encoder runs every layer
    in one segment that scores its last layer; stock (or compression off) runs every layer and
    keeps every token.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    stock = method == "stock" or not config.enabled
    cuts = list(config.prune_layers) if method == "earlytom" and not stock else [num_layers - 1]
    specs, first = [], 0
    for i, layer in enumerate(cuts):
        scoring = not stock and i == len(cuts) - 1
        outputs = (HIDDEN_OUT, SCORES) if scoring else (HIDDEN_OUT,)
        source = PIXELS if i == 0 else HIDDEN
        specs.append(SegmentSpec(f"segment{i}", "encoder", first, layer + 1, (source,), outputs))
        first = layer + 1
    specs.append(SegmentSpec("head", "head", first, num_layers, (HIDDEN,), (FEATURES,)))
    select_inputs = (FEATURES,) if stock else SELECT_INPUTS
    select_outputs = (VIDEO_TOKENS,) if stock else (VIDEO_TOKENS, TOKEN_INDEX)
    specs.append(SegmentSpec("select", "select", num_layers, num_layers, select_inputs, select_outputs))
    return tuple(specs)


def run_layers(
    layers: nn.ModuleList, hidden: torch.Tensor, *, scoring: bool, attention_chunk: int | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """hidden (T, S, D) through `layers`; the last one reads received attention when `scoring`."""
    scores = None
    for i, layer in enumerate(layers):
        if scoring and i == len(layers) - 1:
            hidden, scores = layer_with_received_attention(layer, hidden, frames_per_chunk=attention_chunk)
        else:
            hidden = layer(hidden, None)
    return hidden, scores


class EncoderSegment(nn.Module):
    """pixel_values (T, 3, H, W) or hidden (T, S, D) -> hidden (T, S, D) [, scores (T, S) fp32]."""

    spec: SegmentSpec

    def __init__(self, vision: VisionSide, spec: SegmentSpec, *, attention_chunk: int | None = 8) -> None:
        super().__init__()
        self.spec = spec
        self.embeddings = vision.embeddings if spec.inputs == (PIXELS,) else None
        self.layers = nn.ModuleList(vision.layers[spec.first_layer : spec.stop_layer])
        # Chunking bounds eager memory; an exported graph has a symbolic frame count, so no chunks.
        self.attention_chunk = attention_chunk

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.embeddings(inputs) if self.embeddings is not None else inputs  # (T, S, D)
        hidden, scores = run_layers(
            self.layers, hidden, scoring=self.spec.scores_out, attention_chunk=self.attention_chunk
        )
        return (hidden,) if scores is None else (hidden, scores)


class HeadSegment(nn.Module):
    """hidden (T', S, D) -> features (T', S, C): the layers after the last cut, then the projector."""

    spec: SegmentSpec

    def __init__(self, vision: VisionSide, spec: SegmentSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleList(vision.layers[spec.first_layer : spec.stop_layer])
        self.projector = vision.projector

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor]:
        hidden = run_layers(self.layers, hidden, scoring=False, attention_chunk=None)[0]  # (T, S, D)
        return (self.projector(hidden),)


class SelectSegment(nn.Module):
    """Pooling, TokenSelect (skipped for the stock path: every token) and the newline (if any).

    The vision side says how its features and scores pool to the LLM's token grid (LLaVA:
    bilinear or average pooling of the 27×27 grid; Qwen2.5-VL: the merger already made the grid,
    scores average over each 2×2 merge unit) and whether a newline token follows the video.
    exact: the exact-count budget; the released selection is reconciled to len(token_slots)
    tokens by score (`reconcile_mask`), in plain torch ops instead of the TokenSelect op.
    """

    spec: SegmentSpec

    def __init__(self, vision: Any, spec: SegmentSpec, *, exact: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.exact = exact
        self.image_newline = getattr(vision, "image_newline", None)  # (C,) or None
        self.pool, self.pool_scores = vision.pool, vision.pool_scores

    def forward(
        self,
        features: torch.Tensor,
        scores: torch.Tensor | None = None,
        frame_kind: torch.Tensor | None = None,
        budget: torch.Tensor | None = None,
        token_slots: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """features (T, S, C) [, scores (T, S), frame_kind, budget, token_slots] -> (N [+1], C) [, (N, 2)]."""
        pooled = self.pool(features)  # (T, P, C)
        if scores is None or frame_kind is None or budget is None or token_slots is None:
            # stock: every pooled token, frame after frame, as HF
            return (self._with_newline(pooled.flatten(0, 1)),)  # (T·P [+ 1], C)
        pooled_scores = self.pool_scores(scores)  # (T, P) fp32
        if self.exact:
            tokens, index = exact_token_select(
                pooled, pooled_scores, frame_kind, budget, token_slots.shape[0]
            )
        else:
            tokens, index = torch.ops.earlytom.token_select(
                pooled, pooled_scores, frame_kind, budget, token_slots
            )
        return self._with_newline(tokens), index

    def _with_newline(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.image_newline is None:
            return tokens
        return torch.cat([tokens, self.image_newline[None].to(tokens.dtype)])


def exact_token_select(
    pooled: torch.Tensor, scores: torch.Tensor, frame_kind: torch.Tensor, budget: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact budget's selection: (N*, C) tokens and their (N*, 2) (frame, position), row-major."""
    dynamic, static = (int(k) for k in budget.tolist())
    keep = selection_mask(scores, frame_kind, TokenBudget(dynamic=dynamic, static=static))  # (T, P)
    index = reconcile_mask(keep, scores, count).nonzero()  # (N*, 2)
    return pooled[index[:, 0], index[:, 1]], index


StageModule = EncoderSegment | HeadSegment | SelectSegment


def build_stages(
    vision: VisionSide, config: EarlyTomConfig, *, method: str = "earlytom", attention_chunk: int | None = 8
) -> list[StageModule]:
    """One module per stage of `plan_segments`, sharing the vision side's weights (a Qwen2.5-VL
    vision side gets its own stages, `earlytom.models.qwen_vl.segments`)."""
    from earlytom.models.qwen_vl.vision import QwenVisionSide

    if isinstance(vision, QwenVisionSide):
        from earlytom.models.qwen_vl.segments import build_qwen_stages

        return build_qwen_stages(vision, config, method=method, attention_chunk=attention_chunk)
    modules: list[StageModule] = []
    for spec in plan_segments(config, vision.num_layers, method):
        if spec.kind == "encoder":
            modules.append(EncoderSegment(vision, spec, attention_chunk=attention_chunk))
        elif spec.kind == "head":
            modules.append(HeadSegment(vision, spec))
        else:
            modules.append(SelectSegment(vision, spec, exact=config.budget == "exact"))
    return modules
