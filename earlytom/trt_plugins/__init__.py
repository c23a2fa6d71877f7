"""The EarlyTomTokenSelect TensorRT plugin: CUDA/C++ sources in csrc/, build and registry helpers."""
