"""Segments -> FP16 ONNX (dynamic frames), ONNX Runtime validation, manifest (DESIGN §4)."""
