#!/usr/bin/env bash
# Install (keeping an installed torch) and run the whole test suite; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
"${PYTHON:-python3}" -m pytest "$@"
