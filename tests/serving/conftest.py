"""A real vLLM server (vLLM's CPU build, in its own environment) for the serving tests.

The environment is made by scripts/vllm_env.sh on first use and reused; one server per session
serves both routes, and every test stops what it starts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETTING = {"preset": "videomme", "retention": 0.1}


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """The vLLM environment's python, made on first use (a few minutes; then a few seconds)."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "vllm_env.sh")], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/vllm_env.sh failed:\n{done.stderr[-3000:]}")
    return str(REPO / done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def tiny_vllm(tiny_cache: Path) -> Path:
    from earlytom.models.tiny import tiny_serving_path

    return tiny_serving_path(tiny_cache)


@pytest.fixture(scope="session")
def server(vllm_python: str, tiny_vllm: Path, tmp_path_factory: pytest.TempPathFactory):
    """One server for both routes: spans in (route 1) and videos compressed inside (route 2)."""
    from earlytom.serving.launch import ServerSpec, VllmServer, free_port

    spec = ServerSpec(str(tiny_vllm), route="both", setting=SETTING, port=free_port())
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with VllmServer(spec, python=vllm_python, log=log) as running:
        yield running


@pytest.fixture(scope="session")
def tiny_vllm_loaded(tiny_vllm: Path):
    import torch

    from earlytom.models.loading import load_model

    return load_model(str(tiny_vllm), device=torch.device("cpu"), dtype=torch.float32)
