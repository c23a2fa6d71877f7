"""ONNX stages -> TensorRT plans (tensorrt or tensorrt_rtx), engine checks, the plan executor (DESIGN §5)."""
