"""Stages -> ONNX (FP16 or FP32, dynamic frames), the ONNX Runtime executor, validation (DESIGN §4, §7)."""
