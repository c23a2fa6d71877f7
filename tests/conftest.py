from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # reference_loops and helpers

REPO = TESTS.parent
JOBS_MP4 = REPO.parent / "shared" / "data" / "jobs.mp4"


@pytest.fixture(scope="session")
def jobs_mp4() -> Path:
    if not JOBS_MP4.exists():
        pytest.skip(f"test clip {JOBS_MP4} is not present")
    return JOBS_MP4


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$XDG_CACHE_HOME/earlytom with the tiny model built once for the whole session."""
    from earlytom.models.tiny import tiny_path

    cache = tmp_path_factory.mktemp("xdg-cache") / "earlytom"
    tiny_path(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_loaded(tiny_cache: Path):
    import torch

    from earlytom.models.loading import load_model

    return load_model("tiny", device=torch.device("cpu"), dtype=torch.float32, cache_dir=tiny_cache)


@pytest.fixture(scope="session")
def jobs_frames(jobs_mp4: Path):
    """32 frames of the paper's clip, decoded once."""
    from earlytom.models.video import load_video

    return load_video(jobs_mp4, 32)


def _export(tiny_cache: Path, out: Path, jobs_mp4: Path, frames: int = 32, **options):
    """The tiny model exported through the library job (what earlytom-export runs)."""
    pytest.importorskip("onnxscript", reason="the ONNX export needs onnxscript")
    pytest.importorskip("onnxruntime", reason="validation runs the export in ONNX Runtime")
    from earlytom.exporter.export import ExportSpec
    from earlytom.jobs import run_export

    precision = options.pop("precision", "float16")
    build = options.pop("build", None)
    spec = ExportSpec(model="tiny", precision=precision, validation_video=jobs_mp4, validation_frames=frames,
                      cache_dir=tiny_cache, token_select="onnx", **options)  # fmt: skip
    return run_export(spec, out, build)


@pytest.fixture(scope="session")
def fp16_dir(tiny_cache: Path, jobs_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny exported once per session: fp16 ONNX stages and TensorRT-RTX plans for the A100
    (validated on 8 frames of jobs.mp4; fp32_dir validates on all 32)."""
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is installed by scripts/setup.sh")
    from earlytom.engines.build import BuildConfig

    out = tmp_path_factory.mktemp("export") / "engines" / "tiny"
    _export(tiny_cache, out, jobs_mp4, frames=8, build=BuildConfig("a100"))
    return out


@pytest.fixture(scope="session")
def fp32_dir(tiny_cache: Path, jobs_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny exported once per session: fp32 ONNX stages only (validated for identical selections)."""
    out = tmp_path_factory.mktemp("export32") / "tiny"
    _export(tiny_cache, out, jobs_mp4, precision="float32")
    return out
