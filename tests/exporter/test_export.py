"""earlytom-export end to end on tiny: ONNX stages, validation, TensorRT-RTX plans, artifact, errors.

The exports themselves are made once per test session (conftest: fp16_dir, fp32_dir).
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner

from earlytom.artifact import Artifact, TensorEntry
from earlytom.cli.export import export
from earlytom.cli.main import cli
from earlytom.compression import tie_band_for
from earlytom.config import EarlyTomConfig
from earlytom.engines.check import RuntimeInfo, check_engines
from earlytom.errors import ArtifactError, EngineMismatchError
from earlytom.jobs import staged_output

pytestmark = pytest.mark.slow
RTX = pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is installed by scripts/setup.sh")


def test_writes_stages_validation_plans_and_manifest(fp16_dir: Path) -> None:
    artifact = Artifact.read(fp16_dir)  # verifies format, setting hash, stage I/O and every file hash
    manifest = artifact.manifest
    assert [s.name for s in manifest.segments] == ["segment0", "segment1", "segment2", "head", "select"]
    assert [s.layers for s in manifest.segments] == [(0, 10), (11, 21), (22, 23), (24, 25), ()]
    select = artifact.segment("select")
    assert [t.name for t in select.outputs] == ["video_tokens", "token_index"]
    assert select.outputs[0].dtype == "float16"
    assert select.inputs[1] == TensorEntry("scores", "float32", ("frames", 729))
    assert [t.name for t in artifact.segment("head").outputs] == ["features"]
    assert manifest.precision == "float16" and manifest.opset == 18
    assert manifest.config == EarlyTomConfig() and manifest.tie_band == tie_band_for("float16")
    assert manifest.versions["torch"] == torch.__version__
    assert not manifest.model.fingerprint.startswith("random")

    validation = json.loads((fp16_dir / "validation.json").read_text())
    assert validation["passed"] and validation["failed"] == 0 and manifest.validation.passed
    assert validation["cases"] == ["jobs.mp4 (8 frames)", "random frames (seed 0)"]
    assert all(r["cosine"] >= 0.99 for r in validation["results"] if r["cosine"] is not None)
    where = {r["where"] for r in validation["results"]}
    assert where == {"segment0", "segment1", "segment2", "head", "select", "chain"}

    engines = manifest.engines
    assert engines is not None and engines.builder == "tensorrt_rtx" and engines.target == "a100"
    assert engines.compute_capability == (8, 0)
    assert (engines.profile.min_frames, engines.profile.opt_frames, engines.profile.max_frames) == (1, 32, 64)
    for entry, segment in zip(engines.files, manifest.segments, strict=True):
        assert entry.segment == segment.name and entry.onnx_sha256 == segment.sha256
    assert manifest.token_select == "onnx" and engines.plugin is None
    assert engines.entry("select").plugin_layers == 0 and not engines.entry("select").needs_plugin
    select_graph = onnx.load(fp16_dir / "select.onnx")
    assert {n.domain for n in select_graph.graph.node} == {""}, (
        "onnx mode: TokenSelect inlined to standard ops"
    )
    assert not list(fp16_dir.parent.glob(".tiny.*")), "no staging folder is left behind"


def test_fp32_export_selects_identical_tokens(fp32_dir: Path) -> None:
    validation = json.loads((fp32_dir / "validation.json").read_text())
    assert validation["passed"] and validation["precision"] == "float32"
    index_checks = [r for r in validation["results"] if r["output"] == "token_index"]
    assert len(index_checks) == 4 and all(r["selection_match"] == 1.0 and r["passed"] for r in index_checks)
    assert all(r["cosine"] >= 0.999 for r in validation["results"] if r["cosine"] is not None)
    assert Artifact.read(fp32_dir).manifest.engines is None
    assert not list(fp32_dir.glob("*.plan"))


def test_run_from_artifacts_matches_the_torch_path(fp32_dir: Path, tiny_loaded, jobs_frames) -> None:
    from earlytom.runtime.pipeline import EarlyTomPipeline

    exported = EarlyTomPipeline(tiny_loaded, artifacts=fp32_dir).prepare(jobs_frames, "Describe the video.")
    reference = EarlyTomPipeline(tiny_loaded, EarlyTomConfig()).prepare(jobs_frames, "Describe the video.")
    assert exported.video.frames_per_stage == reference.video.frames_per_stage
    assert torch.equal(exported.video.positions, reference.video.positions)
    assert torch.equal(exported.video.frame_ids, reference.video.frame_ids)
    torch.testing.assert_close(exported.inputs_embeds, reference.inputs_embeds, atol=1e-4, rtol=1e-4)


def test_inspect_prints_manifest_and_engine_layers(fp16_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["inspect", str(fp16_dir)])
    assert result.exit_code == 0, result.output
    assert "tensorrt_rtx" in result.output and "target a100 (SM80)" in result.output
    assert "TokenSelect as standard layers" in result.output
    assert "validation  passed" in result.output


def test_existing_output_needs_force(tiny_cache: Path, fp16_dir: Path) -> None:
    before = (fp16_dir / "manifest.json").read_bytes()
    result = CliRunner().invoke(export, ["--model", "tiny", "--out", str(fp16_dir)])
    assert result.exit_code == 1
    assert result.output.startswith("error: output folder") and "--force" in result.output
    assert (fp16_dir / "manifest.json").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "h100"], "unknown target 'h100'"),
        (["--frames-profile", "8,4,2"], "frame profile 8/4/2 is invalid"),
        (["--retention", "1.5"], "retention"),
        (["--model", "llava-ov-7b"], "not in the local Hugging Face cache"),
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--prune-layers", "10,21,30"], "prune_layers"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path: Path, tiny_cache: Path, args, message) -> None:
    out = tmp_path / "out"
    env = {"XDG_CACHE_HOME": str(tiny_cache.parent), "HF_HUB_CACHE": str(tmp_path / "hub")}
    result = CliRunner().invoke(export, ["--out", str(out), *args], env=env)
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]  # progress lines may come first
    assert last.startswith("error: ") and message in last, result.output
    assert result.output.count("error: ") == 1 and "Traceback" not in result.output
    assert not out.exists() and list(tmp_path.iterdir()) in ([], [tmp_path / "hub"])


def runtime_of(artifact: Artifact) -> RuntimeInfo:
    engines = artifact.manifest.engines
    assert engines is not None
    return RuntimeInfo(
        engines.builder, engines.version, (engines.compute_capability[0], engines.compute_capability[1])
    )


def test_engine_checks_refuse_mismatches(fp16_dir: Path, fp32_dir: Path) -> None:
    artifact = Artifact.read(fp16_dir)
    ok = runtime_of(artifact)
    assert check_engines(artifact, ok, config=EarlyTomConfig()).target == "a100"
    cases = [
        (RuntimeInfo("tensorrt", "10.14.1", (8, 0)), {}, "cannot load in tensorrt"),
        (RuntimeInfo("tensorrt_rtx", "1.8.0", (8, 0)), {}, "re-export them with the installed version"),
        (RuntimeInfo(ok.builder, ok.version, (9, 0)), {}, "this GPU is SM90"),
        (ok, {"config": EarlyTomConfig(retention=0.25, tau=0.7)}, "another EarlyTom setting"),
    ]
    for runtime, kwargs, message in cases:
        with pytest.raises(EngineMismatchError, match=message):
            check_engines(artifact, runtime, **kwargs)
    with pytest.raises(EngineMismatchError, match="no TensorRT plans"):
        check_engines(Artifact.read(fp32_dir), ok)
    with pytest.raises(ArtifactError, match=r"is a folder without manifest\.json"):
        Artifact.read(fp16_dir.parent)


def test_changed_plan_is_refused(fp16_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(fp16_dir, copy)
    engines = Artifact.read(copy).manifest.engines
    assert engines is not None
    plan = copy / engines.files[0].file
    plan.write_bytes(plan.read_bytes()[:-10])
    with pytest.raises(ArtifactError, match="changed since export"):
        Artifact.read(copy)


def test_force_replaces_a_folder_only_when_complete(tiny_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    out.mkdir()
    (out / "old.txt").write_text("previous export")
    failed = CliRunner().invoke(export, ["--model", "tiny", "--out", str(out), "--force", "--target", "h100"])
    assert failed.exit_code == 1 and (out / "old.txt").exists()
    # The job's staging, as jobs.run_export uses it: a failure inside keeps the old folder, success swaps.
    with pytest.raises(RuntimeError), staged_output(out, force=True) as stage:
        (stage / "half.txt").write_text("an export that died")
        raise RuntimeError("export failed")
    assert (out / "old.txt").exists() and not (out / "half.txt").exists()
    with staged_output(out, force=True) as stage:
        (stage / "manifest.json").write_text("{}")
    assert not (out / "old.txt").exists() and (out / "manifest.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"], "no staging folder is left behind"
