"""Prefill FLOPs of LLaVA-OneVision, LLaVA-Video and Qwen2.5-VL, stock and with EarlyTom, in two
conventions (DESIGN §7).

Unit, both conventions: one multiply-add counts as ONE FLOP, as in FastV, HoliTom and the EarlyTom
paper (hardware FLOPs are twice these numbers). Elementwise work (norms, softmax, activations,
residuals, pooling, the frame similarities of Stage I) is not counted.

Letters: B frames sampled, T frames in a stage, S = 729 tokens per frame, P = 196 after pooling,
D/m vision width/MLP width, d/f LLM width/MLP width, n tokens in the LLM sequence.
A "frame" here is what the vision encoder sees: a video frame for LLaVA, a temporal patch of
`temporal_patch` = 2 frames for Qwen2.5-VL (B = 32 frames → 16; S = 1024 patches at 448×448,
P = S/4 = 256 tokens after its 2×2 merger, no newline). `ArchitectureShape.encoder_frames` converts.

"paper": reproduces the paper's table. Per layer, for a sequence of n tokens of width w and MLP
width u (FastV's formula, also used by HoliTom):  4·n·w² + 2·n²·w + 2·n·w·u
  (q, k, v, o projections as four w×w matrices; QKᵀ and AV; two MLP matrices).
- vision: each stage's T frames form ONE joint sequence n = T·S, so attention is quadratic in T·S;
  summed over the layers of that stage. The patch embedding is not counted.
- LLM: n = visual tokens (B·P + 1 newline) + prompt tokens, with the same formula (no GQA, no
  third SwiGLU matrix); the projector and the LM head are not counted. The prompt is 0 tokens.
Arithmetic, B = 32 (n_v = 32·729 = 23328; n = 32·196 + 1 = 6273):
  vision 26·(4·23328·1152² + 2·23328²·1152 + 2·23328·1152·4304)   = 41.834 T
  7B     28·(4·6273·3584²  + 2·6273²·3584  + 2·6273·3584·18944)   = 40.773 T  → total 82.607 T (82.6)
  0.5B   24·(4·6273·896²   + 2·6273²·896   + 2·6273·896·4864)     =  3.488 T  → total 45.322 T (45.3)
This is the only combination found that hits both numbers: counting 2 FLOPs per multiply-add
(165 T) or SwiGLU's three matrices (94.5 T) misses; the projector (+0.40 T on 7B, +0.04 T on 0.5B)
or more than ~5 prompt tokens would push 82.6 or 45.3 to the next decimal.
The same rules give LLaVA-Video-7B at 64 frames 148.87 T of vision plus 97.33 T of LLM = 246.20 T
(the paper's 246.2) with P = 196, but 229.04 T with the checkpoint's average pooling (P = 169).
Applied as they are to Qwen2.5-VL (joint sequence over every block, windows and the third MLP
matrix not counted) they give 54.85 T at 448×448; nothing consistent with max_pixels = 200704
reaches the paper's 554.7 T (tests/compression/test_flops_families.py).

"per-frame": the arithmetic a real prefill does, same unit. Vision attention stays inside each
frame (T·2·S²·D, linear in T), or inside each window of a windowed block (T·2·Σ w²·D; Qwen2.5-VL:
8×8-patch windows except blocks 7/15/23/31), the vision MLP has 2 matrices (3 when gated), and the
patch embedding (S·patch_dim·D per frame) is counted; the projector (S·(D·d + d·d) per final
frame, applied before pooling; Qwen's merger (S/4)·(4D·4D + 4D·d)) is counted; the LLM uses GQA
(k and v are d × kv_heads·head_dim), SwiGLU (3·n·d·f) and dense attention scores 2·n²·d (a causal
kernel may skip about half of them); the LM head runs on the last position only (d·vocab).

EarlyTom (DESIGN §3): vision layers 0..p1 run on B frames, p1+1..p2 on T1, ..., the last stage on
T' frames; the LLM gets N + newline visual tokens; with Stage III, decoder layers >= K (inner_layer)
run on the kept round((N + newline)·(1 - inner_ratio)) visual tokens plus the prompt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any, Literal

from earlytom.compression.selection import frame_kinds, selected_count, token_budget
from earlytom.config import EarlyTomConfig
from earlytom.errors import ConfigError, InputError

Convention = Literal["paper", "per-frame"]
CONVENTIONS: tuple[Convention, ...] = ("paper", "per-frame")


@dataclass(frozen=True)
class ArchitectureShape:
    """The numbers of a Video-LLM architecture that FLOPs depend on (no weights).

    The defaults after `llm_context` are LLaVA-OneVision's. Its projector is Linear(vision_hidden →
    llm_hidden), GELU, Linear(llm_hidden → llm_hidden), applied to all S tokens of a frame before
    pooling to P. A merger (Qwen2.5-VL) concatenates `projector_group` tokens first: (S/g) inputs
    of g·vision_hidden, Linear to `projector_hidden`, GELU, Linear to llm_hidden; P = S/g.
    """

    vision_layers: int
    vision_hidden: int
    vision_mlp: int
    vision_heads: int
    llm_layers: int
    llm_hidden: int
    llm_mlp: int
    llm_heads: int
    llm_kv_heads: int
    vocab_size: int
    tokens_per_frame: int = 729  # S
    pooled_tokens_per_frame: int = 196  # P
    patch_dim: int = 3 * 14 * 14  # input values per patch of the patch-embedding convolution
    llm_head_dim: int = 0  # 0: llm_hidden // llm_heads (Qwen2)
    llm_gated_mlp: bool = True  # SwiGLU: gate, up and down matrices
    llm_context: int = 0  # max_position_embeddings: the most tokens one prefill holds (0: unknown)
    vision_gated_mlp: bool = False  # gate, up and down matrices (Qwen2.5-VL's ViT), per-frame only
    vision_windows: tuple[int, ...] = ()  # tokens of each attention window of a frame; (): none
    vision_full_layers: tuple[int, ...] = ()  # with windows: the blocks attending over the whole frame
    temporal_patch: int = 1  # video frames per encoder frame (Qwen2.5-VL: 2)
    projector_group: int = 1  # vision tokens per projector input (Qwen2.5-VL's 2×2 merger: 4)
    projector_hidden: int = 0  # the projector's hidden width (0: llm_hidden)
    newline_tokens: int = 1  # tokens after the video: LLaVA's one image_newline, Qwen2.5-VL's none

    def __post_init__(self) -> None:
        zero_ok = ("llm_head_dim", "llm_context", "projector_hidden", "newline_tokens")  # 0: derive / none
        for name, value in asdict(self).items():
            least = 0 if name in zero_ok else 1
            for item in value if isinstance(value, tuple) else (value,):
                if not isinstance(item, bool) and (not isinstance(item, int) or item < least):
                    raise InputError(f"ArchitectureShape.{name}={value} must hold integers >= {least}")
        if self.llm_heads % self.llm_kv_heads:
            raise InputError(
                f"llm_heads={self.llm_heads} is not a multiple of llm_kv_heads={self.llm_kv_heads}"
            )
        if self.vision_windows and sum(self.vision_windows) != self.tokens_per_frame:
            raise InputError(
                f"vision_windows={self.vision_windows} hold {sum(self.vision_windows)} tokens, not the "
                f"frame's {self.tokens_per_frame}"
            )
        if any(layer >= self.vision_layers for layer in self.vision_full_layers):
            raise InputError(
                f"vision_full_layers={self.vision_full_layers} are not in 0..{self.vision_layers - 1}"
            )
        if self.tokens_per_frame % self.projector_group:
            raise InputError(
                f"projector_group={self.projector_group} does not divide S={self.tokens_per_frame}"
            )

    @property
    def head_dim(self) -> int:
        return self.llm_head_dim or self.llm_hidden // self.llm_heads

    def encoder_frames(self, frames: int) -> int:
        """Frames the vision encoder sees for `frames` video frames (Qwen2.5-VL repeats an odd last one)."""
        return -(-frames // self.temporal_patch)

    def stock_tokens(self, frames: int) -> int:
        """Visual tokens of the stock model for `frames` video frames: B·P + newline."""
        return self.encoder_frames(frames) * self.pooled_tokens_per_frame + self.newline_tokens


@dataclass(frozen=True)
class FlopsBreakdown:
    """Prefill FLOPs (1 multiply-add = 1) of one run, split by where they are spent."""

    vision: int
    projector: int
    llm: int
    convention: Convention

    @property
    def total(self) -> int:
        return self.vision + self.projector + self.llm

    def to_dict(self) -> dict[str, Any]:
        return {"vision": self.vision, "projector": self.projector, "llm": self.llm, "total": self.total}


def prefill_flops(
    shape: ArchitectureShape,
    *,
    frames_per_stage: Sequence[int],
    prune_layers: Sequence[int] = (),
    visual_tokens: int,
    prompt_tokens: int = 0,
    inner_layer: int | None = None,
    inner_ratio: float = 0.0,
    convention: Convention = "paper",
) -> FlopsBreakdown:
    """FLOPs of one prefill. frames_per_stage = [B, T1, ...]: encoder frames entering the encoder,
    then after each prune layer; visual_tokens = N + newline given to the LLM."""
    _check(shape, frames_per_stage, prune_layers, visual_tokens, prompt_tokens, inner_layer, inner_ratio)
    if convention not in CONVENTIONS:
        raise ConfigError(f"convention '{convention}' is unknown: choose one of {', '.join(CONVENTIONS)}")
    paper = convention == "paper"
    vision = _vision(shape, list(frames_per_stage), list(prune_layers), paper=paper)
    projector = 0 if paper else frames_per_stage[-1] * _projector_per_frame(shape)
    full_layers, kept = shape.llm_layers, visual_tokens
    if inner_layer is not None and inner_ratio > 0:
        full_layers, kept = inner_layer, inner_kept(visual_tokens, inner_ratio)
    llm = full_layers * _llm_layer(shape, visual_tokens + prompt_tokens, paper=paper)
    llm += (shape.llm_layers - full_layers) * _llm_layer(shape, kept + prompt_tokens, paper=paper)
    if not paper:
        llm += shape.llm_hidden * shape.vocab_size  # logits of the last position only (HF generate)
    return FlopsBreakdown(vision=vision, projector=projector, llm=llm, convention=convention)


def inner_kept(visual_tokens: int, inner_ratio: float) -> int:
    """Visual tokens left for decoder layers >= K after Stage III drops `inner_ratio` of them
    (the rule of the inner merge itself: Python round, at least one)."""
    return max(1, round(visual_tokens * (1.0 - inner_ratio)))


def stage_layers(vision_layers: int, prune_layers: Sequence[int]) -> list[range]:
    """Layers run by each stage: layers 0..p1, p1+1..p2, ..., p_last+1..L-1."""
    bounds = [-1, *prune_layers, vision_layers - 1]
    return [range(a + 1, b + 1) for a, b in pairwise(bounds)]


def _vision(shape: ArchitectureShape, frames: list[int], prune_layers: list[int], *, paper: bool) -> int:
    width, mlp, tokens = shape.vision_hidden, shape.vision_mlp, shape.tokens_per_frame
    total = 0 if paper else frames[0] * tokens * shape.patch_dim * width  # patch embedding
    for count, layers in zip(frames, stage_layers(shape.vision_layers, prune_layers), strict=True):
        if paper:  # one joint sequence of T·S tokens, every block alike
            total += len(layers) * _dense_layer(count * tokens, width, mlp)
        else:  # each frame (or window) attends within itself
            total += count * sum(_frame_layer(shape, layer) for layer in layers)
    return total


def _frame_layer(shape: ArchitectureShape, layer: int) -> int:
    """One vision block on one frame: 4·S·D² + 2·Σ w²·D (w: the tokens of each window, S without
    windows) + (2 or 3)·S·D·m."""
    tokens, width = shape.tokens_per_frame, shape.vision_hidden
    windowed = shape.vision_windows and layer not in shape.vision_full_layers
    attention = 2 * sum(n * n for n in (shape.vision_windows if windowed else (tokens,))) * width
    mlp = (3 if shape.vision_gated_mlp else 2) * tokens * width * shape.vision_mlp
    return 4 * tokens * width * width + attention + mlp


def _projector_per_frame(shape: ArchitectureShape) -> int:
    """(S/g)·h·(g·D + d): LLaVA's projector S·d·(D + d) with g = 1, h = d; Qwen's merger g = 4."""
    group, hidden = shape.projector_group, shape.projector_hidden or shape.llm_hidden
    return shape.tokens_per_frame // group * hidden * (group * shape.vision_hidden + shape.llm_hidden)


def _dense_layer(n: int, width: int, mlp: int) -> int:
    """4·n·w² + 2·n²·w + 2·n·w·u: four w×w projections, QKᵀ and AV, two MLP matrices."""
    return 4 * n * width * width + 2 * n * n * width + 2 * n * width * mlp


def _llm_layer(shape: ArchitectureShape, n: int, *, paper: bool) -> int:
    d, f = shape.llm_hidden, shape.llm_mlp
    if paper:
        return _dense_layer(n, d, f)
    q = shape.llm_heads * shape.head_dim
    kv = shape.llm_kv_heads * shape.head_dim
    projections = n * d * (q + 2 * kv) + n * q * d  # q, k, v (GQA: kv heads only), o
    attention = 2 * n * n * q  # QKᵀ and AV over all query heads
    return projections + attention + (3 if shape.llm_gated_mlp else 2) * n * d * f


def _check(
    shape: ArchitectureShape,
    frames: Sequence[int],
    prune_layers: Sequence[int],
    visual_tokens: int,
    prompt_tokens: int,
    inner_layer: int | None,
    inner_ratio: float,
) -> None:
    frames, layers = list(frames), list(prune_layers)
    if not frames or any(not isinstance(t, int) or t < 1 for t in frames):
        raise ConfigError(f"frames_per_stage={frames} must be positive frame counts, e.g. 32,23,17,12")
    if len(frames) != len(layers) + 1:
        raise ConfigError(
            f"frames_per_stage={frames} has {len(frames)} counts; with prune layers {layers} it needs "
            f"{len(layers) + 1}: the input frames, then the frames after each prune layer"
        )
    if any(b > a for a, b in pairwise(frames)):
        raise ConfigError(f"frames_per_stage={frames} increases: frame merging can only remove frames")
    if any(b <= a for a, b in pairwise(layers)) or (
        layers and not 0 <= layers[0] <= layers[-1] < shape.vision_layers
    ):
        raise ConfigError(
            f"prune_layers={layers} must be strictly increasing vision layers in 0..{shape.vision_layers - 1}"
        )
    if visual_tokens < 1:
        raise ConfigError(f"visual_tokens={visual_tokens} is out of range: must be >= 1")
    if prompt_tokens < 0:
        raise ConfigError(f"prompt_tokens={prompt_tokens} is out of range: must be >= 0")
    if inner_layer is not None and not 1 <= inner_layer < shape.llm_layers:
        raise ConfigError(f"inner_layer={inner_layer} is out of range: 1..{shape.llm_layers - 1}")
    if not 0.0 <= inner_ratio < 1.0:
        raise ConfigError(f"inner_ratio={inner_ratio} is out of range: must be in [0, 1)")


# --- stock and EarlyTom runs from an EarlyTomConfig ------------------------------------------------


@dataclass(frozen=True)
class RunFlops:
    """One counted prefill: its label, frames per stage, visual tokens and FLOPs."""

    label: str
    frames_per_stage: tuple[int, ...]
    visual_tokens: int  # N + newline
    visual_tokens_estimated: bool  # True: from the grouping assumption of `estimate_visual_tokens`
    flops: FlopsBreakdown

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "flops"}
        return data | {"frames_per_stage": list(self.frames_per_stage)} | self.flops.to_dict()


@dataclass(frozen=True)
class FlopsReport:
    """Baseline (all tokens) and EarlyTom runs of one model at one frame count."""

    frames: int
    prompt_tokens: int
    convention: Convention
    baseline: RunFlops
    earlytom: tuple[RunFlops, ...] = ()
    config: EarlyTomConfig | None = None
    inner_merge: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "convention": self.convention,
            "unit": "FLOPs, 1 multiply-add = 1",
            "frames": self.frames,
            "prompt_tokens": self.prompt_tokens,
            "config": None if self.config is None else self.config.to_dict(),
            "inner_merge": self.inner_merge,
            "baseline": self.baseline.to_dict(),
            "earlytom": [run.to_dict() for run in self.earlytom],
        }


def baseline_flops(
    shape: ArchitectureShape, *, frames: int, prompt_tokens: int = 0, convention: Convention = "paper"
) -> FlopsBreakdown:
    """The stock model: `frames` video frames (B encoder frames) through every layer, B·P + newline
    visual tokens."""
    return prefill_flops(
        shape, frames_per_stage=[shape.encoder_frames(frames)], visual_tokens=shape.stock_tokens(frames),
        prompt_tokens=prompt_tokens, convention=convention,
    )  # fmt: skip


def estimate_visual_tokens(
    shape: ArchitectureShape, config: EarlyTomConfig, *, base_frames: int, frames: int
) -> int:
    """N + newline for T' = `frames` final encoder frames out of `base_frames`, assuming the final
    groups are full segments of max_window - 1 frames (no similarity below τ); a measured run
    gives the exact count."""
    step = config.max_window - 1
    groups = [(s, min(s + step, frames) - 1) for s in range(0, frames, step)]
    budget = token_budget(
        shape.pooled_tokens_per_frame, frames, retention=config.retention, base_frames=base_frames
    )
    return selected_count(frame_kinds(groups, frames), budget) + shape.newline_tokens


def frame_count_range(config: EarlyTomConfig, frames: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(most merging, no merging) frames per stage. Most merging: no segment closes early (every
    segment holds max_window - 1 frames) and every merge fires, the fewest frames Stage I can leave."""
    fewest, count = [frames], frames
    for _ in config.prune_layers:
        full, rest = divmod(count, config.max_window - 1)
        count = full * _fewest_out(config.max_window - 1, config) + _fewest_out(rest, config)
        fewest.append(count)
    return tuple(fewest), tuple([frames] * (len(config.prune_layers) + 1))


def _fewest_out(n: int, config: EarlyTomConfig) -> int:
    """Frames a segment of n frames leaves when every merge fires (DESIGN §3 Stage I step 2)."""
    middle = n - 2
    if middle < 2:
        return n
    return 2 + (middle // 2 if config.drop_last_middle else math.ceil(middle / 2))


def _check_request(
    shape: ArchitectureShape, frames: int, visual_tokens: int | None, prompt_tokens: int
) -> None:
    """The numbers a user gives: positive frames, at most the stock model's visual tokens, and a
    prefill that fits the language model's context (when the shape records it)."""
    if frames < 1:
        raise ConfigError(f"frames={frames} is out of range: must be >= 1")
    stock = shape.stock_tokens(frames)
    if visual_tokens is not None and not 1 <= visual_tokens <= stock:
        newline = ", newline included" if shape.newline_tokens else ""
        raise ConfigError(
            f"visual_tokens={visual_tokens} is out of range: {frames} frames give 1..{stock} (the stock "
            f"model's count{newline})"
        )
    if prompt_tokens < 0:
        raise ConfigError(f"prompt_tokens={prompt_tokens} is out of range: must be >= 0")
    context = shape.llm_context
    if visual_tokens is None and 0 < context <= prompt_tokens:
        raise ConfigError(
            f"prompt_tokens={prompt_tokens} is out of range: the language model's context holds {context} "
            "positions, the visual tokens included"
        )
    if visual_tokens is not None and 0 < context < prompt_tokens + visual_tokens:
        raise ConfigError(
            f"prompt_tokens={prompt_tokens} with visual_tokens={visual_tokens} need "
            f"{prompt_tokens + visual_tokens} positions, more than the language model's context of {context}"
        )


def flops_report(
    shape: ArchitectureShape,
    *,
    frames: int,
    config: EarlyTomConfig | None = None,
    frames_per_stage: Sequence[int] | None = None,
    visual_tokens: int | None = None,
    prompt_tokens: int = 0,
    inner_merge: bool = True,
    convention: Convention = "paper",
) -> FlopsReport:
    """Baseline, plus EarlyTom when `config` is given: at `frames_per_stage` (encoder frames) when
    known (e.g. from `earlytom run --json`), else at both ends of `frame_count_range`."""
    _check_request(shape, frames, visual_tokens, prompt_tokens)
    units = shape.encoder_frames(frames)
    base = baseline_flops(shape, frames=frames, prompt_tokens=prompt_tokens, convention=convention)
    baseline = RunFlops("baseline", (units,), shape.stock_tokens(frames), False, base)
    if config is None:
        return FlopsReport(frames, prompt_tokens, convention, baseline, inner_merge=inner_merge)
    config.check_model(vision_layers=shape.vision_layers, language_layers=shape.llm_layers)
    if frames_per_stage is not None:
        counts = tuple(frames_per_stage)
        if counts and counts[0] != units and shape.temporal_patch == 1:
            raise ConfigError(f"frames_per_stage starts with {counts[0]} frames but frames={frames}")
        if counts and counts[0] != units:
            raise ConfigError(
                f"frames_per_stage starts with {counts[0]} but frames={frames} enter the encoder as {units} "
                f"temporal patches of {shape.temporal_patch} frames: frames_per_stage counts temporal patches"
            )
        cases = [("EarlyTom", counts)]
    else:
        fewest, most = frame_count_range(config, units)
        cases = [("EarlyTom, most merging", fewest), ("EarlyTom, no merging", most)]
    runs = []
    for label, counts in cases:
        _check(shape, counts, config.prune_layers, 1, prompt_tokens, None, 0.0)
        estimated = visual_tokens is None
        tokens = (
            estimate_visual_tokens(shape, config, base_frames=units, frames=counts[-1])
            if visual_tokens is None
            else visual_tokens
        )
        breakdown = prefill_flops(
            shape, frames_per_stage=counts, prune_layers=config.prune_layers, visual_tokens=tokens,
            prompt_tokens=prompt_tokens, inner_layer=config.inner_layer if inner_merge else None,
            inner_ratio=config.inner_ratio if inner_merge else 0.0, convention=convention,
        )  # fmt: skip
        runs.append(RunFlops(label, counts, tokens, estimated, breakdown))
    return FlopsReport(frames, prompt_tokens, convention, baseline, tuple(runs), config, inner_merge)
