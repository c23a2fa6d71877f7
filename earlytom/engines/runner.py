"""Run one TensorRT plan on torch CUDA tensors: bind by address, enqueue on the current stream.

Every output shape of every segment follows from its input shapes (TokenSelect's N is the length
of `token_slots`), so outputs are allocated up front from the context's shapes: no output
allocator and no host round trip inside a segment.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from earlytom.artifact import Artifact
from earlytom.errors import EngineMismatchError, InputError
from earlytom.models.segments import SegmentSpec

TORCH_DTYPES = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT64": torch.int64,
    "INT32": torch.int32,
    "BOOL": torch.bool,
}


def torch_dtype(trt_dtype: Any) -> torch.dtype:
    name = getattr(trt_dtype, "name", str(trt_dtype)).split(".")[-1]
    if name not in TORCH_DTYPES:
        raise EngineMismatchError(f"engine tensor type {name} is not supported by the earlytom runner")
    return TORCH_DTYPES[name]


def output_shape(dims: Any, name: str) -> tuple[int, ...]:
    """The context's shape for an output once inputs are set; -1 would mean a data-dependent size."""
    shape = tuple(int(d) for d in dims)
    if any(d < 0 for d in shape):
        raise EngineMismatchError(
            f"output {name} has an unresolved shape {shape}: the plan was not built by earlytom-export"
        )
    return shape


class TrtPlan:
    """A deserialised plan with one execution context; called with named CUDA tensors. `data`: the
    plan's bytes, already read and checked (else read from `plan`)."""

    def __init__(
        self,
        trt: Any,
        runtime: Any,
        plan: Path,
        device: torch.device | None = None,
        *,
        data: bytes | None = None,
    ) -> None:
        self.trt, self.device = trt, device or torch.device("cuda", torch.cuda.current_device())
        self.engine = runtime.deserialize_cuda_engine(plan.read_bytes() if data is None else data)
        if self.engine is None:
            raise EngineMismatchError(f"{plan} could not be deserialised on this GPU (see the log above)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]
        self.dtypes = {n: torch_dtype(self.engine.get_tensor_dtype(n)) for n in names}

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = [n for n in self.inputs if n not in inputs]
        if missing:
            raise InputError(f"engine inputs missing: {', '.join(missing)}")
        stream = torch.cuda.current_stream(self.device)
        kept = []  # contiguous, typed copies must outlive the enqueue
        for name in self.inputs:
            tensor = inputs[name].to(device=self.device, dtype=self.dtypes[name]).contiguous()
            kept.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self.outputs:
            shape = output_shape(self.context.get_tensor_shape(name), name)
            outputs[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EngineMismatchError("TensorRT failed to execute the plan (see the log above)")
        return outputs

    def release(self) -> None:
        self.context = None
        self.engine = None


class TrtExecutor(TrtPlan):
    """A stage's plan behind the vision path's executor protocol; its bindings must be the spec's."""

    def __init__(
        self, trt: Any, runtime: Any, plan: Path, spec: SegmentSpec, device: torch.device, data: bytes
    ) -> None:
        super().__init__(trt, runtime, plan, device, data=data)
        self.spec = spec
        if (set(self.inputs), set(self.outputs)) != (set(spec.input_names), set(spec.output_names)):
            raise EngineMismatchError(
                f"{plan} binds {self.inputs} -> {self.outputs}, the stage {spec.name} declares "
                f"{list(spec.input_names)} -> {list(spec.output_names)}: export the folder again"
            )


def tensorrt_executors(artifact: Artifact, device: torch.device) -> list[TrtExecutor]:
    """One executor per plan of a verified artifact, after the engine checks and the plugin library."""
    from earlytom.engines.builders import load_builder
    from earlytom.engines.check import RuntimeInfo, check_engines

    engines = artifact.manifest.engines
    if engines is None:
        raise EngineMismatchError(
            f"{artifact.folder} has no TensorRT plans (exported with --skip-build): re-export without "
            "--skip-build, or use --backend onnxruntime"
        )
    if device.type != "cuda":
        raise InputError(
            "the tensorrt backend runs on an NVIDIA GPU: use --device cuda, or --backend onnxruntime"
        )
    builder = load_builder(engines.builder)
    major, minor = torch.cuda.get_device_capability(device)
    check_engines(artifact, RuntimeInfo(builder.name, builder.version, (major, minor)))
    trt = builder.module
    if engines.plugin is not None and any(f.needs_plugin for f in engines.files):
        from earlytom.trt_plugins.registry import load_plugin_library

        artifact.verified_bytes(engines.plugin.file)  # checked again just before the loader maps it
        load_plugin_library(trt, artifact.path(engines.plugin.file))
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    executors = []
    for spec in artifact.specs:
        file = engines.entry(spec.name).file
        executors.append(
            TrtExecutor(trt, runtime, artifact.path(file), spec, device, artifact.verified_bytes(file))
        )
    return executors
