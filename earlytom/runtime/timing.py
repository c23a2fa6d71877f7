"""Wall-clock stage timing with the device synchronised at every boundary."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

STAGES = ("vision_encoding", "token_processing", "llm_prefill", "other")


@dataclass(frozen=True)
class StageTimes:
    """Milliseconds of time-to-first-token per stage (the paper's breakdown, plus `other`)."""

    vision_encoding: float
    token_processing: float
    llm_prefill: float
    other: float

    @property
    def total(self) -> float:
        return self.vision_encoding + self.token_processing + self.llm_prefill + self.other

    def to_dict(self) -> dict[str, float]:
        return {stage: round(getattr(self, stage), 3) for stage in STAGES} | {"total": round(self.total, 3)}


class StageTimer:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.elapsed = dict.fromkeys(STAGES, 0.0)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.elapsed[name] += (time.perf_counter() - start) * 1000.0

    def result(self) -> StageTimes:
        return StageTimes(**self.elapsed)
