#!/usr/bin/env bash
# Install earlytom (editable) with its test tools, ONNX Runtime and TensorRT-RTX (CPU builds). An installed torch is kept as it is: a CUDA
# machine brings its own build, and an unpinned torch would pull several GB of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if ! "$python" -c "import torch" 2>/dev/null; then
  echo "installing torch 2.13.0 (CPU build) ..." >&2
  "$python" -m pip install --quiet torch==2.13.0
fi
"$python" -m pip install --quiet --disable-pip-version-check -e ".[dev,onnx,rtx,bench]"
# TensorRT's public C++ headers, for building the TokenSelect plugin where no TensorRT SDK is
# installed (the tensorrt-rtx wheel has none); --no-deps: only the headers are wanted.
"$python" -m pip install --quiet --disable-pip-version-check --no-deps "kernel-lens==2.0.1"
