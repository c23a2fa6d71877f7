"""ONNX segments -> TensorRT plans (full `tensorrt` or `tensorrt_rtx`), engine checks (DESIGN §5)."""
