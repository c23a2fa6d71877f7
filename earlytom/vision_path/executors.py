"""The executor protocol: one stage of the vision path behind named tensors in, named tensors out.

Lifecycle (Polygraphy's runners): an executor is built from a verified artifact or a module and
is ready to call (sessions, contexts and bindings are made once), is called many times, and is
released explicitly. Outputs come back on the device the inputs came from, so the planner between
stages always works on the pipeline's device, whatever ran the stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from earlytom.models.segments import SegmentSpec, StageModule

Tensors = dict[str, torch.Tensor]


class Executor(Protocol):
    spec: SegmentSpec

    def __call__(self, inputs: Tensors) -> Tensors: ...

    def release(self) -> None: ...


class TorchExecutor:
    """A stage module run eagerly on the device and dtype its weights live in (the reference)."""

    def __init__(self, module: StageModule) -> None:
        self.module = module
        self.spec = module.spec

    @torch.no_grad()
    def __call__(self, inputs: Tensors) -> Tensors:
        outputs = self.module(*(inputs[name] for name in self.spec.input_names))
        return dict(zip(self.spec.output_names, outputs, strict=True))

    def release(self) -> None:
        """Nothing to free: the module's weights belong to the model."""


def torch_executors(modules: Sequence[StageModule]) -> list[Executor]:
    return [TorchExecutor(module) for module in modules]
