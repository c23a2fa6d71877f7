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

from earlytom.errors import EngineMismatchError, InputError

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


class TrtSegment:
    """A deserialised plan with one execution context; call it with named CUDA tensors."""

    def __init__(self, trt: Any, runtime: Any, plan: Path) -> None:
        self.trt = trt
        self.engine = runtime.deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            raise EngineMismatchError(f"{plan} could not be deserialised on this GPU (see the log above)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]
        self.dtypes = {n: torch_dtype(self.engine.get_tensor_dtype(n)) for n in names}

    def __call__(self, feed: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = [n for n in self.inputs if n not in feed]
        if missing:
            raise InputError(f"engine inputs missing: {', '.join(missing)}")
        stream = torch.cuda.current_stream()
        kept = []  # contiguous, typed copies must outlive the enqueue
        for name in self.inputs:
            tensor = feed[name].to(device="cuda", dtype=self.dtypes[name]).contiguous()
            kept.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self.outputs:
            shape = output_shape(self.context.get_tensor_shape(name), name)
            outputs[name] = torch.empty(shape, dtype=self.dtypes[name], device="cuda")
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EngineMismatchError("TensorRT failed to execute the plan (see the log above)")
        return outputs
