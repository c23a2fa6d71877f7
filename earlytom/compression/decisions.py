"""Stage I's float decisions, each recorded with its margin, and the tie band (DESIGN §7).

Every data-dependent choice of Stage I compares two floats:
- "segment_close": close the segment before frame i when ŝ < τ; frames = (anchor, i);
- "merge_threshold": a middle pair may merge when s_i > τ_m; frames = (G_i, G_i+1, F_s, F_e);
- "merge_neighbour": ... and when s_i > s_i+1; frames = (G_i, G_i+1, G_i+2); made (and recorded)
  only after a passing "merge_threshold", as the released `and` short-circuits.
Frame indices are those of the frames entering that stage. The window cap (i - start + 1 >=
max_window) compares integers, cannot flip by rounding and is not recorded; a segment closed by
the cap therefore has no "segment_close" record for its last frame.

Two backends compute the same similarity up to rounding, so a comparison closer than that noise
can go either way. A comparison whose |margin| <= tie_band is resolved as the released code
resolves an exact tie (equal floats make `<` and `>` false): do not close, do not merge. With
tie_band = 0 only exact ties are in the band, and those already resolve that way: the outcome is
bit-for-bit the released rule's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SEGMENT_CLOSE = "segment_close"
MERGE_THRESHOLD = "merge_threshold"
MERGE_NEIGHBOUR = "merge_neighbour"
KINDS = (SEGMENT_CLOSE, MERGE_THRESHOLD, MERGE_NEIGHBOUR)

# Noise bounds on the margin (a difference of two similarities), per precision of the vision
# encoder: ten times the largest margin noise measured, rounded up to 1, 2 or 5 x 10^k. Measured by
# benchmarks/decision_agreement.py: |margin_backend - margin_reference| over the 2800-3200 decisions
# each backend and the torch fp32 reference both made, on jobs.mp4 + the 31 clips of
# benchmarks/clips.py, tiny model on the CPU (results/decision-agreement-*-noise-bands.json):
#   float32:  ONNX Runtime fp32 max 3.0e-7 (p99.9 2.9e-7)                        -> 5e-6
#   float16:  torch fp16 max 1.8e-4 (p99.9 1.5e-4), ONNX Runtime fp16 max 1.3e-4 -> 2e-3
#   bfloat16: torch bf16 max 2.4e-3 (p99.9 2.1e-3)                               -> 5e-2
# Validation calls a flipped decision a near-tie when its reference margin is within this bound.
NOISE_BOUNDS: dict[str, float] = {"float32": 5e-6, "float16": 2e-3, "bfloat16": 5e-2}

# Tie bands: what the planner resolves as an exact tie. Their job is the exact ties (frozen and
# duplicate frames) that rounding turns into tiny margins of either sign: measured, those scatter
# by at most 1.3e-6 even in fp16 (the one fp16 flip of the run: reference margin 0.0, torch fp16
# +1.3e-6, ONNX Runtime fp16 +1.8e-7). fp32's noise bound covers them in every precision. A band as
# wide as fp16's generic noise (2e-3) would change the released rule on 24 of 32 clips and on
# jobs.mp4 (the -noise-bands result), which is not a rare deviation; 5e-6 changes 7 of ~3100
# decisions and no frame count. Per precision so that a measurement on other weights or devices
# can set them apart.
TIE_BANDS: dict[str, float] = {"float32": 5e-6, "float16": 5e-6, "bfloat16": 5e-6}

# Similarities are always computed in fp32 (SimilarityBand), so fp64 hidden states get fp32's band.
_ALIASES = {"fp32": "float32", "float64": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}


@dataclass(frozen=True)
class Decision:
    """One float comparison of Stage I: lhs against rhs, its signed margin and what it decided.

    margin > 0 means the strict comparison is true (τ - ŝ for a close, s_i - τ_m, s_i - s_i+1).
    outcome is the decision after the band; in_band says |margin| <= tie_band.
    """

    stage: int  # prune-layer index; len(prune_layers) for the final grouping
    kind: str  # one of KINDS
    frames: tuple[int, ...]
    lhs: float
    rhs: float
    margin: float
    outcome: bool
    in_band: bool

    @property
    def released(self) -> bool:
        """What the released rule (no band) decides: the strict comparison itself."""
        return self.margin > 0

    @property
    def changed(self) -> bool:
        """True when the band turned a released "close"/"merge" into "do not"."""
        return self.in_band and self.released


def decide(
    kind: str, frames: tuple[int, ...], lhs: float, rhs: float, *, tie_band: float, stage: int = 0
) -> Decision:
    """Compare lhs and rhs the way `kind` does (ŝ < τ for a close, s > t for a merge), with the band."""
    if kind == SEGMENT_CLOSE:
        strict, margin = lhs < rhs, rhs - lhs
    elif kind in (MERGE_THRESHOLD, MERGE_NEIGHBOUR):
        strict, margin = lhs > rhs, lhs - rhs
    else:
        raise ValueError(f"unknown decision kind {kind!r}: one of {', '.join(KINDS)}")
    in_band = abs(margin) <= tie_band
    # `strict` is the released comparison itself (not margin > 0) so that tie_band = 0 is that rule.
    return Decision(stage, kind, frames, lhs, rhs, margin, strict and not in_band, in_band)


def check_tie_band(tie_band: float) -> float:
    if not tie_band >= 0.0:  # also rejects NaN
        raise ValueError(f"tie_band={tie_band} must be >= 0 (0 is the released rule)")
    return float(tie_band)


def tie_band_for(dtype: torch.dtype | str) -> float:
    """The tie band for hidden states computed in `dtype` (torch.float16, "float32", "bf16", ...)."""
    return TIE_BANDS[_precision(dtype)]


def noise_bound_for(dtype: torch.dtype | str) -> float:
    """How far apart two backends of this precision may compute one margin (validation's near-tie)."""
    return NOISE_BOUNDS[_precision(dtype)]


def _precision(dtype: torch.dtype | str) -> str:
    name = str(dtype).removeprefix("torch.")
    name = _ALIASES.get(name, name)
    if name not in TIE_BANDS:
        raise ValueError(f"no tie band for dtype {dtype!r}: known are {', '.join(TIE_BANDS)}")
    return name


def changed_count(decisions: tuple[Decision, ...] | list[Decision]) -> int:
    """Decisions the band changed: in the band, and the released rule would have closed/merged."""
    return sum(d.changed for d in decisions)
