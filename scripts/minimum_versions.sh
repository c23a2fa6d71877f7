#!/usr/bin/env bash
# The GPU suite's plumbing run under a GPU machine's versions, on this CPU: Python 3.12, torch
# 2.11.0, transformers 5.17.0, onnxruntime 1.30, no PyAV (videos decode with OpenCV), no
# onnxscript, the project not installed (PYTHONPATH). Re-runnable: the environment is reused while
# its pins are unchanged, and the inputs are made again from this tree each time.
#
#   bash scripts/minimum_versions.sh
#
# 1. a virtual environment with exactly the pins below ($EARLYTOM_MIN_VENV, default .venv-minimum/,
#    git-ignored; PyPI's torch 2.11.0 is its CUDA 13 build, ~0.5 GB plus ~3 GB of CUDA libraries,
#    which import and run on a CPU);
# 2. with this machine's own environment (the project's dev extras, PyAV, onnxscript): tiny's
#    weights, tiny exported to fp32 ONNX (earlytom-export --skip-build --fp32), the 32 sampled
#    frames of jobs.mp4 as a frames file and, where nvcc is, the kernel library for sm_90, in
#    $EARLYTOM_MIN_WORK (default engines/gpu-carry/, git-ignored): what a GPU run carries;
# 3. benchmarks/gpu_suite.py in the pinned environment on the CPU (tiny, 8 frames, 1 run after 1
#    warm-up, the GPU tests step and the artifact step included), writing to benchmarks/results/
#    files named cpu-plumbing-minimum-versions-*.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${EARLYTOM_MIN_VENV:-$repo/.venv-minimum}
work=${EARLYTOM_MIN_WORK:-$repo/engines/gpu-carry}
out=${EARLYTOM_MIN_OUT:-$repo/benchmarks/results}
main_python=${EARLYTOM_MAIN_PYTHON:-python3}
video=${EARLYTOM_MIN_VIDEO:-$repo/../shared/data/jobs.mp4}
label=cpu-plumbing-minimum-versions
pins=(torch==2.11.0 transformers==5.17.0 "onnxruntime==1.30.*" onnx tokenizers safetensors pillow
      opencv-python-headless click numpy matplotlib pytest)

find_python312() {
  local candidate
  for candidate in "${EARLYTOM_MIN_PYTHON:-}" "$HOME/.pyenv/versions/3.12.1/bin/python" python3.12; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo "error: no Python 3.12 found: set EARLYTOM_MIN_PYTHON to one" >&2
  exit 1
}

make_venv() {
  local stamp="$venv/.earlytom-pins" wanted="${pins[*]}"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
    echo "reusing $venv" >&2
  else
    echo "creating $venv: ${pins[*]}" >&2
    "$(find_python312)" -m venv --clear "$venv"
    # (pip's notes about this machine's extra package folders are dropped, its errors kept)
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" 2>&1 |
      { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
    echo "$wanted" >"$stamp"
  fi
  # The conditions under test: neither an optional decoder nor the ONNX exporter's onnxscript.
  "$venv/bin/python" -m pip uninstall --quiet --yes av onnxscript >/dev/null 2>&1 || true
  (cd / && "$venv/bin/python" -) <<'EOF'
import importlib.util, sys
import onnxruntime, torch, transformers
present = [name for name in ("av", "onnxscript", "earlytom") if importlib.util.find_spec(name)]
assert not present, f"must not be importable here: {present}"
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"onnxruntime {onnxruntime.__version__}, no av, no onnxscript", file=sys.stderr)
EOF
}

make_inputs() {
  # Made with the full environment: tiny is built once per cache, the export and the frames file
  # every run, so they always come from this tree's code.
  mkdir -p "$work/cache"
  rm -rf "$work/tiny-export"
  echo "exporting tiny to $work/tiny-export with $main_python ..." >&2
  (cd "$repo" && XDG_CACHE_HOME="$work/cache" PYTHONPATH="$repo" "$main_python" -c \
    'import sys; sys.argv[0] = "earlytom-export"; from earlytom.cli.export import main; main()' \
    --model tiny --skip-build --fp32 --out "$work/tiny-export" >&2)
  (cd "$repo" && PYTHONPATH="$repo" "$main_python" benchmarks/gpu_suite.py --video "$video" --frames 32 \
    --write-frames "$work/jobs-32.npz" >&2)
  # The kernel library for an H100/H200, where nvcc is here: the GPU run's kernel bench and test.
  if command -v nvcc >/dev/null 2>&1; then
    (cd "$repo" && XDG_CACHE_HOME="$work/cache" PYTHONPATH="$repo" "$main_python" -c \
      'import sys; sys.argv[0] = "earlytom"; from earlytom.cli.main import main; main()' \
      build-plugins --arch 90-real --out "$work/cache/earlytom/plugins" >&2) ||
      echo "warning: the kernel library was not built; the GPU run records the kernel as skipped" >&2
  fi
}

run_suite() {
  local status=0
  mkdir -p "$out"
  echo "running the suite under the pinned versions (CPU plumbing) ..." >&2
  (cd "$repo" && env -u XDG_CACHE_HOME PYTHONPATH="$repo" HF_HUB_OFFLINE=1 timeout 900 \
    "$venv/bin/python" benchmarks/gpu_suite.py --out "$out" --label "$label" --model tiny --device cpu \
    --frames 8 --runs 1 --warmup 1 --video "$video" --artifacts "$work/tiny-export" \
    --cache-dir "$work/cache/earlytom") || status=$?
  echo "results: $(ls -t "$out"/suite-"$label"-*.json 2>/dev/null | head -1) (and $label-* beside it)" >&2
  echo "inputs for a GPU run: $work ($(du -sh "$work" | cut -f1))" >&2
  return $status
}

make_venv
make_inputs
run_suite
