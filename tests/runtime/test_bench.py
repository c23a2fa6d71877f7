"""`earlytom bench`: JSON and chart of a real tiny run, the numbers' consistency, one-line errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from earlytom.cli.bench import bench
from earlytom.config import EarlyTomConfig, preset
from earlytom.errors import MissingDependencyError
from earlytom.runtime.bench import inner_merge_of, percentile
from earlytom.runtime.bench_report import require_matplotlib
from earlytom.runtime.timing import STAGES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUNS = 2


def invoke(tiny_cache: Path, *args: str) -> Result:
    env = {"XDG_CACHE_HOME": str(tiny_cache.parent), "HF_HUB_CACHE": str(tiny_cache.parent / "empty-hub")}
    return CliRunner(env=env).invoke(bench, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def tiny_bench(
    tiny_cache: Path, jobs_mp4: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Result, dict[str, Any], Path]:
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("bench") / "tmp"
    result = invoke(tiny_cache, "--model", "tiny", "--video", str(jobs_mp4), "--retention", "0.1,0.25",
                    "--runs", str(RUNS), "--warmup", "1", "--frames", "8", "--post-encoder",
                    "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (json_path,) = out.glob("*.json")
    return result, json.loads(json_path.read_text()), out


@pytest.mark.slow
def test_report_holds_baseline_and_each_retention(tiny_bench: tuple[Result, dict[str, Any], Path]) -> None:
    _, data, _ = tiny_bench
    assert data["model"] == "tiny" and data["frames"] == 8 and data["runs"] == RUNS
    assert data["dtype"] == "float32" and data["backend"] == "torch" and data["preset"] == "videomme"
    assert {"torch", "transformers"} <= set(data["versions"]) and data["device"]["name"]
    assert "--retention 0.1,0.25" in data["command"] and data["date"]
    base = data["baseline"]
    assert base["label"] == "baseline" and base["retention"] is None and not base["config"]["enabled"]
    assert [s["label"] for s in data["earlytom"]] == ["10%", "25%"]
    assert [s["retention"] for s in data["earlytom"]] == [0.1, 0.25]
    assert base["visual_tokens"] == 8 * 196 + 1 and base["frames_per_stage"] == [8]
    assert base["speedup"] == 1.0
    for setting in (base, *data["earlytom"]):
        ttft = setting["ttft_ms"]
        for stage in (*STAGES, "total"):
            assert len(ttft["runs"][stage]) == RUNS
            assert ttft["p50"][stage] <= ttft["p90"][stage] + 1e-9
        for i in range(RUNS):  # each run's total is the sum of its stages
            parts = sum(ttft["runs"][stage][i] for stage in STAGES)
            assert ttft["runs"]["total"][i] == pytest.approx(parts, abs=0.01)
        assert ttft["p50"]["total"] == pytest.approx(percentile(ttft["runs"]["total"], 50), abs=0.01)
        assert set(setting["flops"]) == {"paper", "per-frame"}


@pytest.mark.slow
def test_speedup_tokens_and_flops_against_the_baseline(
    tiny_bench: tuple[Result, dict[str, Any], Path],
) -> None:
    _, data, _ = tiny_bench
    base = data["baseline"]
    for setting in data["earlytom"]:
        p50 = setting["ttft_ms"]["p50"]["total"]
        assert setting["speedup"] == pytest.approx(base["ttft_ms"]["p50"]["total"] / p50, rel=1e-3)
        assert setting["visual_tokens"] < base["visual_tokens"]
        assert setting["visual_tokens_before"] == base["visual_tokens"]
        frames = setting["frames_per_stage"]
        assert frames[0] == 8 and len(frames) == 4 and frames == sorted(frames, reverse=True)
        for convention in ("paper", "per-frame"):
            assert setting["flops"][convention]["total"] < base["flops"][convention]["total"]
        assert setting["inner_merge"]["source"]  # which Stage III was assumed is recorded
    low, high = data["earlytom"]
    assert low["visual_tokens"] < high["visual_tokens"]


@pytest.mark.slow
def test_post_encoder_rows_share_the_baseline(tiny_bench: tuple[Result, dict[str, Any], Path]) -> None:
    result, data, _ = tiny_bench
    base, post = data["baseline"], data["post_encoder"]
    assert [s["label"] for s in post] == ["post 10%", "post 25%"]
    assert {s["method"] for s in post} == {"post-encoder"} and base["method"] == "stock"
    for row, earlytom in zip(post, data["earlytom"], strict=True):
        assert row["retention"] == earlytom["retention"] and row["config"] == earlytom["config"]
        assert row["frames_per_stage"] == [8]  # every frame runs every encoder layer
        assert row["visual_tokens"] == 8 * math.ceil(196 * row["retention"]) + 1
        p50 = row["ttft_ms"]["p50"]["total"]
        assert row["speedup"] == pytest.approx(base["ttft_ms"]["p50"]["total"] / p50, rel=1e-3)
        for key in ("counted", "layer", "ratio"):  # the same Stage III as EarlyTom at that retention
            assert row["inner_merge"][key] == earlytom["inner_merge"][key]
        # Same encoder FLOPs as the stock model; fewer language-model FLOPs.
        for convention in ("paper", "per-frame"):
            assert row["flops"][convention]["vision"] == base["flops"][convention]["vision"]
            assert row["flops"][convention]["total"] < base["flops"][convention]["total"]
    assert "post 10%" in result.stdout and "post-encoder baseline" in result.stdout


@pytest.mark.slow
def test_table_paths_and_png(tiny_bench: tuple[Result, dict[str, Any], Path]) -> None:
    result, _, out = tiny_bench
    for label in ("setting", "TTFT p50", "speed-up", "TFLOPs paper", "baseline", "10%", "25%", "8→"):
        assert label in result.stdout
    written = [
        Path(line.removeprefix("wrote ")) for line in result.stdout.splitlines() if line.startswith("wrote")
    ]
    assert [p.suffix for p in written] == [".json", ".png"]
    assert all(p.parent == out and p.name.startswith("cpu-") and "-tiny-" in p.name for p in written)
    assert written[1].read_bytes()[:8] == PNG_MAGIC
    assert "warm-up" in result.stderr  # progress on stderr, table on stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--retention", "1.5"], "retention=1.5 is out of range"),
        (["--retention", "0.3"], "has no setting for retention=0.3"),
        (["--retention", "ten"], "is not a comma-separated list"),
        (["--retention", "0.1,0.1"], "repeat a value"),
        (["--runs", "0"], "runs=0 is out of range"),
        (["--warmup", "0"], "warmup=0 is out of range"),
        (["--frames", "0"], "frames=0 is out of range"),
        (["--backend", "tensorrt"], "backend 'tensorrt' cannot be benchmarked"),
        (["--video", "no/such/video.mp4"], "no/such/video.mp4"),
    ],
)
def test_bad_input_is_one_line(tiny_cache: Path, jobs_mp4: Path, args: list[str], message: str) -> None:
    base = {"--video": str(jobs_mp4), "--retention": "0.1", "--runs": "1", "--frames": "4"}
    base |= dict(zip(args[::2], args[1::2], strict=True))
    result = invoke(tiny_cache, *[part for pair in base.items() for part in pair], "--out", "unused")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr and not result.stdout


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'earlytom\[bench\]'"):
        require_matplotlib()


def test_imports_stay_light() -> None:
    """The command module loads nothing heavy (`earlytom --help` imports it); the library no matplotlib."""
    code = (
        "import sys, earlytom.cli.bench\n"
        "heavy = {'matplotlib', 'torch', 'transformers', 'av'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "import earlytom.runtime.bench, earlytom.runtime.bench_report\n"
        "assert 'matplotlib' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([3.0], 90) == 3.0
    assert percentile([1.0, 2.0], 50) == 1.5
    assert percentile([4.0, 1.0, 3.0, 2.0], 90) == pytest.approx(3.7)


def test_inner_merge_is_read_from_the_run_or_assumed_off() -> None:
    config = preset("videomme", 0.1)
    assert inner_merge_of({}, config)[:2] == (None, 0.0)
    assert "assumed off" in inner_merge_of({}, config)[2]
    assert inner_merge_of({"inner_merge": None}, config)[:2] == (None, 0.0)
    reported = {"inner_merge": {"layer": 18, "ratio": 0.5, "visual_tokens_dropped": 80}}
    assert inner_merge_of(reported, config) == (18, 0.5, "reported by the pipeline")
    assert inner_merge_of(reported, EarlyTomConfig(enabled=False))[0] is None
