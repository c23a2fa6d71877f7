"""Import hygiene: the package and the algorithm stay light (DESIGN §2)."""

from __future__ import annotations

import subprocess
import sys


def test_algorithm_never_imports_transformers_or_av() -> None:
    code = (
        "import sys, earlytom, earlytom.compression, earlytom.config\n"
        "heavy = {'transformers', 'av', 'tensorrt', 'tensorrt_rtx', 'onnxruntime'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
