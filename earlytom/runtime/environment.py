"""Where a benchmark ran: device name, file-name slug, package versions."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        found = None
    cpu = found.group(1).strip() if found else platform.processor() or platform.machine()
    return f"{cpu}, {cpu_count()} cores, {torch.get_num_threads()} torch threads"


def cpu_count() -> int:
    """Cores this process may use (a container's limit, not the host's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "unknown"

    found = {"python": platform.python_version(), "torch": torch.__version__,
             "transformers": of("transformers"), "earlytom": of("earlytom")}  # fmt: skip
    return found | ({"cuda": str(torch.version.cuda)} if torch.version.cuda else {})


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.") or "unknown"


def device_slug(device: torch.device) -> str:
    if device.type == "cuda":
        return slug(str(torch.cuda.get_device_name(device)).removeprefix("NVIDIA "))
    return f"cpu-{cpu_count()}core"
