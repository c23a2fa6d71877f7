"""--budget exact from the command line: N* tokens on the torch path, refused where it cannot run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from earlytom.cli.export import export as export_main
from earlytom.cli.main import cli
from earlytom.compression import exact_count


@pytest.fixture
def runner(tiny_cache: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tiny_cache.parent))
    return CliRunner()


@pytest.mark.parametrize(("retention", "frames"), [(0.1, 32), (0.25, 16)])
def test_run_with_the_exact_budget_keeps_n_star(runner: CliRunner, jobs_mp4: Path, retention, frames) -> None:
    args = ["run", "--video", str(jobs_mp4), "--prompt", "Describe the video.", "--json", "--budget", "exact",
            "--retention", str(retention), "--frames", str(frames), "--max-new-tokens", "2",
            "--warmup", "0"]  # fmt: skip
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["visual_tokens_after"] == exact_count(196, frames, retention=retention) + 1
    assert data["config"]["budget"] == "exact"


def test_exact_budget_is_refused_where_it_cannot_run(
    runner: CliRunner, fp32_dir: Path, tmp_path: Path
) -> None:
    export = runner.invoke(
        export_main, ["--model", "tiny", "--out", str(tmp_path / "x"), "--budget", "exact"]
    )
    assert export.exit_code == 1
    assert "budget 'exact' is not exportable yet" in export.stderr and "Traceback" not in export.stderr
    assert not (tmp_path / "x").exists()
    folder = runner.invoke(cli, ["run", "--artifacts", str(fp32_dir), "--video", "demo", "--prompt", "p",
                                 "--budget", "exact"])  # fmt: skip
    assert folder.exit_code == 1
    assert "--budget cannot change an exported folder's setting" in folder.stderr
