"""The plugin as vLLM sees it: entry point, registration, and a refused start-up."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from earlytom.errors import ServingError
from earlytom.serving.launch import ServerSpec, VllmServer, free_port

pytestmark = pytest.mark.slow

DISCOVER = """
import importlib.metadata as metadata
from vllm.plugins import load_general_plugins
load_general_plugins()
load_general_plugins()  # every vLLM process loads plugins: registering twice must be harmless
from earlytom.serving.vllm import ARCHITECTURE, register
register()
from vllm import ModelRegistry
from vllm.model_executor.models.llava_onevision import LlavaOnevisionForConditionalGeneration
from earlytom.serving.vllm.model import EarlyTomLlavaOnevisionForConditionalGeneration as Model
points = [p.value for p in metadata.entry_points(group="vllm.general_plugins") if p.name == "earlytom"]
print(points, ARCHITECTURE in ModelRegistry.get_supported_archs(),
      issubclass(Model, LlavaOnevisionForConditionalGeneration))
"""


def test_entry_point_is_discovered_and_the_architecture_registered(vllm_python: str) -> None:
    done = subprocess.run(
        [vllm_python, "-c", DISCOVER], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "['earlytom.serving.vllm:register'] True True"


def test_stage_iii_fails_the_start_up_with_the_reason(
    vllm_python: str, tiny_vllm: Path, tmp_path: Path
) -> None:
    spec = ServerSpec(str(tiny_vllm), route="video", setting={"inner_merge": True}, port=free_port())
    started = time.monotonic()
    with pytest.raises(ServingError, match=r"exited with code [1-9].*Stage III cannot run under vLLM"):
        VllmServer(spec, python=vllm_python, log=tmp_path / "server.log", start_timeout=300).start()
    assert time.monotonic() - started < 300
