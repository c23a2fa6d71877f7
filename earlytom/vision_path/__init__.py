"""One vision path for every backend: executors run the stages, a planner runs between them.

An executor runs one stage (a torch module, an ONNX Runtime session, a TensorRT context) behind
one protocol (`executors.Executor`); `VisionPath` is the one chain loop. The post-encoder baseline
and the stock model are planner variants, not other loops.
"""

from earlytom.vision_path.executors import Executor, Tensors, TorchExecutor, torch_executors
from earlytom.vision_path.path import EncodedVideo, StageRecord, VideoTokens, VisionPath, torch_vision_path
from earlytom.vision_path.planners import Planner, PostEncoderPlanner, StockPlanner, planner_for

__all__ = [
    "EncodedVideo",
    "Executor",
    "Planner",
    "PostEncoderPlanner",
    "StageRecord",
    "StockPlanner",
    "Tensors",
    "TorchExecutor",
    "VideoTokens",
    "VisionPath",
    "planner_for",
    "torch_executors",
    "torch_vision_path",
]
