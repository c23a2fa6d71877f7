"""VisionPath: the one chain loop, for every backend and method.

`encode` is the vision encoding of the TTFT breakdown: the encoder segments with the planner
between them, then the head (remaining layers and projector). `tokens` is token processing: the
select stage (pooling, TokenSelect, newline). The split is the same on every backend, so the
breakdown compares across backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from earlytom.compression import Decision, SelectionInputs
from earlytom.config import EarlyTomConfig
from earlytom.vision_path.executors import Executor, Tensors, torch_executors
from earlytom.vision_path.planners import Planner, planner_for


@dataclass(frozen=True)
class StageRecord:
    """What one stage received and returned (kept only when asked: validation compares stages)."""

    name: str
    inputs: Tensors
    outputs: Tensors


@dataclass(frozen=True)
class EncodedVideo:
    features: torch.Tensor  # (T', S, C) projected features of the frames left after Stage I
    scores: torch.Tensor | None  # (T', S) fp32 received attention of the scoring layer, merged
    selection: SelectionInputs | None  # None: every token is kept (stock)
    frames_per_stage: tuple[int, ...]  # input frames, then frames after each merge
    decisions: tuple[Decision, ...] = ()  # every Stage I comparison, with its margin
    records: list[StageRecord] = field(default_factory=list)
    sources: tuple[int, ...] = ()  # (T',) the input frame each final frame starts from (its first blend)
    tokens_per_frame: int = 0  # P of this video


@dataclass(frozen=True)
class VideoTokens:
    embeds: torch.Tensor  # (N + 1, C): selected visual tokens, then image_newline
    frame_ids: torch.Tensor | None  # (N,) source frame (after Stage I) of each token; None: all kept
    positions: torch.Tensor | None  # (N,) raster position in the pooled grid
    frames_per_stage: tuple[int, ...]
    tokens_before: int  # what the stock model would feed: B·P (+ 1 newline where the model has one)
    decisions: tuple[Decision, ...] = ()
    records: list[StageRecord] = field(default_factory=list)
    sources: tuple[int, ...] = ()  # (T',) input frame of each final frame (M-RoPE time positions)


class VisionPath:
    """Executors for [encoder segments..., head, select] and the planner that runs between them."""

    def __init__(
        self,
        executors: Sequence[Executor],
        planner: Planner,
        *,
        tokens_per_frame: int | None,
        newline_tokens: int = 1,
    ) -> None:
        """tokens_per_frame: P; None when it depends on each video (Qwen2.5-VL's grid): `encode` gets it."""
        kinds = [executor.spec.kind for executor in executors]
        if len(kinds) < 3 or kinds[-2:] != ["head", "select"] or set(kinds[:-2]) != {"encoder"}:
            raise ValueError(f"a vision path is encoder segments, then head and select; got {kinds}")
        self.encoders = list(executors[:-2])
        self.head, self.select = executors[-2], executors[-1]
        self.planner = planner
        self.tokens_per_frame = tokens_per_frame  # P, or None: per video
        self.newline_tokens = newline_tokens  # appended after the video (LLaVA: 1, Qwen2.5-VL: 0)

    @torch.no_grad()
    def encode(
        self,
        pixel_values: torch.Tensor,
        *,
        side: Tensors | None = None,
        tokens_per_frame: int | None = None,
        record: bool = False,
    ) -> EncodedVideo:
        """pixel_values (T, ...) -> projected features of the frames left after Stage I.

        `side`: per-video tensors a family's stages read beside the frames (Qwen2.5-VL's rotary
        tables and window mask); each stage gets the ones its spec declares. `tokens_per_frame`:
        this video's P when the path's depends on the video."""
        per_frame = tokens_per_frame or self.tokens_per_frame
        if per_frame is None:
            raise ValueError("this vision path's tokens per frame depend on the video: pass tokens_per_frame")
        records: list[StageRecord] = []
        side = side or {}
        hidden, scores = pixel_values, None
        frames, decisions = [pixel_values.shape[0]], list[Decision]()
        sources = list(range(frames[0]))
        floor = self.planner.min_frames(base_frames=frames[0], tokens_per_frame=per_frame)
        for stage, executor in enumerate(self.encoders):
            inputs = _side_inputs(executor, side) | {executor.spec.input_names[0]: hidden}
            outputs = _run(executor, inputs, records if record else None)
            hidden, scores = outputs["hidden_out"], outputs.get("scores")  # (T, S, D), (T, S)
            if self.planner.merges:
                merged = self.planner.merge(hidden, scores, stage=stage, min_frames=floor)
                hidden, scores = merged.hidden, merged.scores
                sources = [sources[blend.first] for blend in merged.plan]
                frames.append(hidden.shape[0])
                decisions.extend(merged.decisions)
        selection = self.planner.selection_inputs(
            hidden, base_frames=frames[0], tokens_per_frame=per_frame, stage=len(self.encoders)
        )
        if selection is not None:
            if scores is None:
                raise ValueError("no encoder segment produced scores: the last one must score its last layer")
            decisions.extend(selection.decisions)
        head_inputs = _side_inputs(self.head, side) | {"hidden": hidden}
        features = _run(self.head, head_inputs, records if record else None)["features"]
        return EncodedVideo(
            features, scores, selection, tuple(frames), tuple(decisions), records, tuple(sources), per_frame
        )

    @torch.no_grad()
    def tokens(self, encoded: EncodedVideo, *, record: bool = False) -> VideoTokens:
        """The select stage: (N + 1, C) visual tokens and where each came from."""
        records = list(encoded.records)
        inputs: Tensors = {"features": encoded.features}
        selection = encoded.selection
        if selection is not None and encoded.scores is not None:
            inputs |= {"scores": encoded.scores, "frame_kind": selection.frame_kind,
                       "budget": selection.budget, "token_slots": selection.token_slots}  # fmt: skip
        outputs = _run(self.select, inputs, records if record else None)
        index = outputs.get("token_index")  # (N, 2) or None (stock)
        return VideoTokens(
            embeds=outputs["video_tokens"],
            frame_ids=None if index is None else index[:, 0],
            positions=None if index is None else index[:, 1],
            frames_per_stage=encoded.frames_per_stage,
            tokens_before=encoded.frames_per_stage[0] * encoded.tokens_per_frame + self.newline_tokens,
            decisions=encoded.decisions,
            records=records,
            sources=encoded.sources,
        )

    def run(
        self,
        pixel_values: torch.Tensor,
        *,
        side: Tensors | None = None,
        tokens_per_frame: int | None = None,
        record: bool = False,
    ) -> VideoTokens:
        encoded = self.encode(pixel_values, side=side, tokens_per_frame=tokens_per_frame, record=record)
        return self.tokens(encoded, record=record)

    def release(self) -> None:
        for executor in [*self.encoders, self.head, self.select]:
            executor.release()


def _side_inputs(executor: Executor, side: Tensors) -> Tensors:
    """The per-video tensors `executor`'s spec declares (all inputs after its first)."""
    missing = [name for name in executor.spec.input_names[1:] if name not in side]
    if missing:
        raise ValueError(f"stage {executor.spec.name} needs {', '.join(missing)}, which the video lacks")
    return {name: side[name] for name in executor.spec.input_names[1:]}


def _run(executor: Executor, inputs: Tensors, records: list[StageRecord] | None) -> Tensors:
    outputs = executor(inputs)
    if records is not None:
        records.append(StageRecord(executor.spec.name, inputs, outputs))
    return outputs


def torch_vision_path(
    vision: Any,
    config: EarlyTomConfig,
    *,
    method: str = "earlytom",
    tie_band: float = 0.0,
    attention_chunk: int | None = 8,
) -> VisionPath:
    """The vision side's own modules as the stages (the torch backend and the reference)."""
    from earlytom.models.segments import build_stages

    stock = "stock" if not config.enabled else method
    modules = build_stages(vision, config, method=stock, attention_chunk=attention_chunk)
    return VisionPath(
        torch_executors(modules),
        planner_for(config, stock, tie_band=tie_band),
        tokens_per_frame=getattr(vision, "pooled_tokens_per_frame", None),  # None: per video (Qwen2.5-VL)
        newline_tokens=vision.newline_tokens,
    )
