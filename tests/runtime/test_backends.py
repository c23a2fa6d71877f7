"""Runtime backends: torch and ONNX Runtime give the same answer; TensorRT is checked before it loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from earlytom.compression import tie_band_for
from earlytom.config import EarlyTomConfig
from earlytom.engines.runner import output_shape, torch_dtype
from earlytom.errors import EarlyTomError, EngineMismatchError, InputError
from earlytom.runtime.pipeline import EarlyTomPipeline

pytestmark = pytest.mark.slow
PROMPT = "Describe the video."


@pytest.mark.parametrize("inner_merge", [True, False])
def test_torch_and_onnxruntime_give_identical_tokens_and_stats(
    tiny_loaded, jobs_frames, fp32_dir: Path, inner_merge: bool
) -> None:
    torch_run = EarlyTomPipeline(tiny_loaded, EarlyTomConfig(), backend="torch", inner_merge=inner_merge)
    ort_run = EarlyTomPipeline(
        tiny_loaded, artifacts=fp32_dir, backend="onnxruntime", inner_merge=inner_merge
    )
    a = torch_run(jobs_frames, PROMPT, max_new_tokens=8)
    b = ort_run(jobs_frames, PROMPT, max_new_tokens=8)
    assert a.token_ids == b.token_ids
    assert a.frames_per_stage == b.frames_per_stage
    assert (a.visual_tokens_before, a.visual_tokens_after) == (b.visual_tokens_before, b.visual_tokens_after)
    assert a.extra["inner_merge"] == b.extra["inner_merge"]
    assert (a.extra["backend"], b.extra["backend"]) == ("torch", "onnxruntime")
    if inner_merge:
        assert a.extra["inner_merge"]["visual_tokens_dropped"] == a.visual_tokens_after // 2
    else:
        assert a.extra["inner_merge"] is None


def test_stream_gets_the_answer_in_pieces(tiny_loaded, jobs_frames) -> None:
    pieces: list[str] = []
    result = EarlyTomPipeline(tiny_loaded)(jobs_frames, PROMPT, max_new_tokens=6, stream=pieces.append)
    assert "".join(pieces).strip() == result.text


def test_sampling_with_a_seed_is_reproducible(tiny_loaded, jobs_frames) -> None:
    from earlytom.models.generation import SamplingConfig

    pipeline = EarlyTomPipeline(tiny_loaded)
    sampling = SamplingConfig(temperature=1.5, seed=3)
    first = pipeline(jobs_frames, PROMPT, max_new_tokens=6, sampling=sampling)
    second = pipeline(jobs_frames, PROMPT, max_new_tokens=6, sampling=sampling)
    assert first.token_ids == second.token_ids


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "tensorrt"}, "needs an engine folder"),
        ({"backend": "cuda-graphs"}, "unknown backend"),
    ],
)
def test_backend_choices_are_checked(tiny_loaded, kwargs, message) -> None:
    with pytest.raises(InputError, match=message):
        EarlyTomPipeline(tiny_loaded, **kwargs)


def test_engine_dir_problems_are_clear(tiny_loaded, fp32_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="takes no engine folder"):
        EarlyTomPipeline(tiny_loaded, artifacts=fp32_dir, backend="torch")
    with pytest.raises(EarlyTomError, match="manifest"):
        EarlyTomPipeline(tiny_loaded, artifacts=tmp_path, backend="onnxruntime")
    with pytest.raises(EngineMismatchError, match="no TensorRT plans"):
        EarlyTomPipeline(tiny_loaded, artifacts=fp32_dir, backend="tensorrt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a CPU-only machine gives")
def test_tensorrt_backend_on_cpu_is_one_line(tiny_cache: Path, jobs_mp4: Path, fp16_dir: Path) -> None:
    from earlytom.cli.main import cli

    env = {"XDG_CACHE_HOME": str(tiny_cache.parent)}
    out = fp16_dir
    result = CliRunner().invoke(
        cli,
        ["run", "--model", "tiny", "--video", str(jobs_mp4), "--prompt", PROMPT, "--engine-dir", str(out),
         "--backend", "tensorrt", "--frames", "4", "--warmup", "0"],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "NVIDIA GPU" in result.output and "Traceback" not in result.output


def test_runner_maps_types_and_refuses_unresolved_shapes() -> None:
    class Kind:
        def __init__(self, name: str) -> None:
            self.name = name

    assert torch_dtype(Kind("HALF")) is torch.float16 and torch_dtype(Kind("INT64")) is torch.int64
    with pytest.raises(EngineMismatchError, match="not supported"):
        torch_dtype(Kind("FP8"))
    assert output_shape((630, 3584), "video_tokens") == (630, 3584)
    with pytest.raises(EngineMismatchError, match="unresolved shape"):
        output_shape((-1, 3584), "video_tokens")


def test_run_json_reports_backend_and_inner_merge(tiny_cache: Path, jobs_mp4: Path) -> None:
    from earlytom.cli.main import cli

    result = CliRunner().invoke(
        cli,
        ["run", "--model", "tiny", "--video", str(jobs_mp4), "--prompt", PROMPT, "--frames", "8",
         "--warmup", "0", "--max-new-tokens", "2", "--no-inner-merge", "--json"],
        env={"XDG_CACHE_HOME": str(tiny_cache.parent)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output.strip().splitlines()[-1])
    assert payload["backend"] == "torch" and payload["inner_merge"] is None


def test_artifact_path_with_an_fp16_language_model_on_the_cpu(
    tiny_cache: Path, tiny_loaded, fp32_dir: Path, jobs_frames
) -> None:
    """The device/dtype boundaries of the artifact path: an fp16 model, fp32 graphs, host copies."""
    from earlytom.models.loading import load_model

    half = load_model("tiny", device=torch.device("cpu"), dtype=torch.float16, cache_dir=tiny_cache)
    exported = EarlyTomPipeline(half, artifacts=fp32_dir, backend="onnxruntime")
    assert exported.vision.planner.tie_band == tie_band_for("float32")  # the folder's band, not the model's
    got = exported.prepare(jobs_frames, PROMPT)
    assert got.inputs_embeds.dtype == torch.float16
    # fp32 graphs fed fp16 pixels (cast up in the executor) select what the fp32 torch reference selects.
    reference = EarlyTomPipeline(tiny_loaded, EarlyTomConfig()).prepare(jobs_frames, PROMPT)
    assert got.video.frames_per_stage == reference.video.frames_per_stage
    assert torch.equal(got.video.positions, reference.video.positions)
    result = exported(jobs_frames, PROMPT, max_new_tokens=3)
    assert len(result.token_ids) == 3 and result.extra["dtype"] == "float16"
