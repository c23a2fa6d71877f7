"""Build `libearlytom_plugins.so` (CUDA kernel + IPluginV3) from `csrc/` with CMake and nvcc.

TensorRT headers are looked up in order: an explicit folder, `$TENSORRT_ROOT/include`, the usual
system install folders, and last the public TensorRT 10.14 headers that the `kernel-lens` wheel
ships (`pip install --no-deps kernel-lens`), which is how a machine without a TensorRT SDK (only
the `tensorrt-rtx` wheel, which has no headers) builds the plugin. The plugin links no TensorRT
library, so one build serves TensorRT and TensorRT-RTX.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlytom.errors import ExportError, InputError
from earlytom.models.tiny import default_cache_dir

SOURCE_DIR = Path(__file__).parent / "csrc"
LIBRARY = "libearlytom_plugins.so"  # getCreators: loadLibrary, trtexec --dynamicPlugins, TensorRT-RTX
STATIC_LIBRARY = "libearlytom_plugins_static.so"  # self-registering: full TensorRT's trtexec --staticPlugins
KERNELS = "libearlytom_kernels.so"  # the kernel alone behind a C function: GPU tests and benchmarks
RECORD = "plugins.json"
DEFAULT_ARCHITECTURES = ("80-real", "86-real", "89-real", "90-real", "120")
SYSTEM_HEADER_DIRS = (
    Path("/usr/include/x86_64-linux-gnu"),
    Path("/usr/include/aarch64-linux-gnu"),
    Path("/usr/local/tensorrt/include"),
    Path("/opt/tensorrt/include"),
    Path("/usr/include"),
)


@dataclass(frozen=True)
class PluginLibraries:
    folder: Path
    library: Path
    static_library: Path
    record: dict[str, Any]


def default_plugin_dir() -> Path:
    return default_cache_dir() / "plugins"


def source_sha256() -> str:
    """One hash over every source file: a built library records which sources it came from."""
    digest = hashlib.sha256()
    for path in sorted(SOURCE_DIR.iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def find_tensorrt_headers(explicit: Path | None = None) -> Path:
    """The folder holding NvInferRuntime.h, or an InputError saying how to provide one."""
    candidates: list[Path] = []
    if explicit is not None:
        if not (explicit / "NvInferRuntime.h").is_file():
            raise InputError(f"no NvInferRuntime.h in {explicit}: pass the TensorRT include folder")
        return explicit
    if os.environ.get("TENSORRT_ROOT"):
        candidates.append(Path(os.environ["TENSORRT_ROOT"]) / "include")
    candidates.extend(SYSTEM_HEADER_DIRS)
    spec = importlib.util.find_spec("kernel_lens")  # no import: the package pulls in triton
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(p) / "include" / "tensorrt" for p in spec.submodule_search_locations)
    for folder in candidates:
        if (folder / "NvInferRuntime.h").is_file():
            return folder
    raise InputError(
        "TensorRT headers (NvInferRuntime.h) not found: set TENSORRT_ROOT to a TensorRT install, pass "
        "--tensorrt-include DIR, or run 'pip install --no-deps kernel-lens' (ships TensorRT's public headers)"
    )


def find_tool(name: str, explicit: Path | None, hint: str) -> Path:
    if explicit is not None:
        if not explicit.is_file():
            raise InputError(f"{name} not found at {explicit}")
        return explicit
    found = shutil.which(name) or (
        f"/usr/local/cuda/bin/{name}" if Path(f"/usr/local/cuda/bin/{name}").is_file() else None
    )
    if found is None:
        raise InputError(f"{name} not found on PATH: {hint}")
    return Path(found)


def tensorrt_header_version(headers: Path) -> str:
    text = (headers / "NvInferVersion.h").read_text() if (headers / "NvInferVersion.h").is_file() else ""
    parts = [re.search(rf"#define TRT_{part}_ENTERPRISE (\d+)", text) for part in ("MAJOR", "MINOR", "PATCH")]
    if all(parts):
        return ".".join(m.group(1) for m in parts if m)
    major = re.search(r"#define NV_TENSORRT_MAJOR (\d+)", text)
    minor = re.search(r"#define NV_TENSORRT_MINOR (\d+)", text)
    return f"{major.group(1)}.{minor.group(1)}" if major and minor else "unknown"


def nvcc_version(nvcc: Path) -> str:
    output = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"release (\d+\.\d+)", output)
    return match.group(1) if match else "unknown"


def build_plugin_libraries(
    out_dir: Path | None = None,
    *,
    tensorrt_include: Path | None = None,
    nvcc: Path | None = None,
    architectures: tuple[str, ...] = DEFAULT_ARCHITECTURES,
    progress: Callable[[str], None] = lambda _: None,
) -> PluginLibraries:
    """Configure and build with CMake in a temporary folder; move the libraries in when both built."""
    out_dir = out_dir or default_plugin_dir()
    headers = find_tensorrt_headers(tensorrt_include)
    compiler = find_tool("nvcc", nvcc, "install the CUDA toolkit (nvcc) or pass --nvcc PATH")
    cmake = find_tool("cmake", None, "install CMake >= 3.18 (for example 'pip install cmake')")
    progress(
        f"TensorRT headers {tensorrt_header_version(headers)} from {headers}; nvcc {nvcc_version(compiler)}"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=out_dir) as scratch:
        build_dir = Path(scratch)
        configure = [
            str(cmake), "-S", str(SOURCE_DIR), "-B", str(build_dir),
            f"-DTENSORRT_INCLUDE_DIR={headers}", f"-DCMAKE_CUDA_COMPILER={compiler}",
            f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(architectures)}",
        ]  # fmt: skip
        progress(f"compiling for {', '.join(architectures)} (about a minute)")
        for step in (configure, [str(cmake), "--build", str(build_dir), "-j", str(os.cpu_count() or 2)]):
            result = subprocess.run(step, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                log = build_dir / "build.log"
                log.write_text(result.stdout + result.stderr)
                kept = Path(tempfile.mkdtemp(prefix="earlytom-plugin-build-")) / "build.log"
                shutil.copy(log, kept)
                last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
                raise ExportError(f"plugin build failed: {last[0]} (full log: {kept})")
        libraries: dict[str, str] = {}
        record: dict[str, Any] = {
            "libraries": libraries,
            "tensorrt_headers": str(headers),
            "tensorrt_header_version": tensorrt_header_version(headers),
            "nvcc": nvcc_version(compiler),
            "architectures": list(architectures),
            "source_sha256": source_sha256(),
        }
        for name in (LIBRARY, STATIC_LIBRARY, KERNELS):
            staged = build_dir / name
            libraries[name] = hashlib.sha256(staged.read_bytes()).hexdigest()
            os.replace(staged, out_dir / name)
        tmp = out_dir / (RECORD + ".partial")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, out_dir / RECORD)
    return PluginLibraries(out_dir, out_dir / LIBRARY, out_dir / STATIC_LIBRARY, record)


def find_plugin_library(explicit: Path | None = None) -> Path | None:
    """An explicit library (must exist), else the default build's, else None."""
    if explicit is not None:
        if not explicit.is_file():
            raise InputError(f"plugin library {explicit} does not exist: run 'earlytom build-plugins'")
        return explicit
    default = default_plugin_dir() / LIBRARY
    return default if default.is_file() else None
