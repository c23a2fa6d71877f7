"""Runtime: the pipeline users deploy (a vision path on torch, ONNX Runtime or TensorRT + the LM driver)."""

from earlytom.runtime.pipeline import EarlyTomPipeline, RunResult
from earlytom.runtime.timing import StageTimes

__all__ = ["EarlyTomPipeline", "RunResult", "StageTimes"]
