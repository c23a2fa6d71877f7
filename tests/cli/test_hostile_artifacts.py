"""Tampered, truncated, missing and malformed artifact folders, through the command lines.

Every case is a copy of the session's exported folder (conftest: fp16_dir), tampered inside the
test. Each must be one `error:` line naming the file or field and what to re-export, exit code 1,
no traceback, in `earlytom inspect` and on every backend that gets as far as the folder (a cheaper
refusal may come first: `--backend torch` takes no folder, `--backend tensorrt` needs a GPU), and
nothing of the folder may run: the model is never loaded and no ONNX Runtime session is made.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from videos import write_video

from earlytom.artifact import MANIFEST
from earlytom.cli.main import cli
from earlytom.config import EarlyTomConfig

pytestmark = pytest.mark.slow
BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")


def reads_the_folder(backend: str) -> bool:
    import torch

    return backend in ("auto", "onnxruntime") or (backend == "tensorrt" and torch.cuda.is_available())


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def edit_manifest(change: Callable[[Any], Any]) -> Callable[[Path], None]:
    def tamper(folder: Path) -> None:
        path = folder / MANIFEST
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return tamper


def rehashed(data: dict[str, Any], **config: Any) -> dict[str, Any]:
    """The setting edited and its hash recomputed: only the stages' own record gives it away."""
    data["config"] |= config
    data["config_sha256"] = EarlyTomConfig.from_dict(data["config"]).config_hash()
    return data


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "edited onnx bytes": (lambda f: flip_byte(f / "segment1.onnx"), "segment1.onnx has changed since export"),
    "truncated onnx": (
        lambda f: (f / "head.onnx").write_bytes((f / "head.onnx").read_bytes()[:1000]),
        "head.onnx has changed since export",
    ),
    "missing segment file": (lambda f: (f / "segment2.onnx").unlink(), "segment2.onnx is missing"),
    "segment file replaced by a folder": (
        lambda f: ((f / "segment0.onnx").unlink(), (f / "segment0.onnx").mkdir()),
        "segment0.onnx is not a file",
    ),
    "edited plan": (lambda f: flip_byte(f / "select.plan"), "select.plan has changed since export"),
    "edited plan hash": (
        edit_manifest(lambda d: d["engines"]["files"][0].update(sha256="0" * 64) or d),
        "segment0.plan has changed since export",
    ),
    "edited setting, stale hash": (
        edit_manifest(lambda d: d["config"].update(tau=0.9) or d),
        "the EarlyTom setting does not match its config_sha256",
    ),
    "edited setting, hash recomputed": (
        edit_manifest(lambda d: rehashed(d, prune_layers=[8, 21, 23])),
        "field 'segments[0]' declares segment0 as encoder with layers [0, 10]",
    ),
    "manifest [1, 2]": (
        edit_manifest(lambda d: [1, 2]),
        "manifest.json is not a JSON object (it holds a list)",
    ),
    "manifest missing a key": (
        edit_manifest(lambda d: {k: v for k, v in d.items() if k != "geometry"}),
        "field 'geometry' is missing",
    ),
    "manifest field of the wrong type": (
        edit_manifest(lambda d: d | {"opset": "18"}),
        "field 'opset' has str",
    ),
    "manifest entry of the wrong shape": (
        edit_manifest(lambda d: d["engines"].update(compute_capability=[8]) or d),
        "field 'engines.compute_capability' is [8]",
    ),
    "file outside the folder": (
        edit_manifest(lambda d: d["segments"][0].update(file="../elsewhere/segment0.onnx") or d),
        "field 'segments[0].file' is '../elsewhere/segment0.onnx', expected a file name inside the folder",
    ),
    "unknown format": (
        edit_manifest(lambda d: d | {"format": "earlytom-artifacts/9"}),
        "has format 'earlytom-artifacts/9', this earlytom reads 'earlytom-artifacts/3'",
    ),
    "manifest not JSON": (lambda f: (f / MANIFEST).write_bytes(b"\xff{"), "manifest.json is not valid JSON"),
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", 4)


@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the model or making an ONNX Runtime session fails the test: the folder must be
    refused before either."""
    import onnxruntime

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("a tampered folder reached the model load or an ONNX Runtime session")

    monkeypatch.setattr("earlytom.runtime.pipeline.load_model", refuse)
    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)


def one_line_error(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 1, (args, result.output)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


@pytest.mark.parametrize("case", list(CASES))
def test_a_tampered_folder_is_refused_everywhere(
    case: str, fp16_dir: Path, tmp_path: Path, clip: Path, nothing_runs: None
) -> None:
    tamper, message = CASES[case]
    folder = tmp_path / "tiny"
    shutil.copytree(fp16_dir, folder)
    tamper(folder)
    commands = {"inspect": ["inspect", str(folder)]} | {
        backend: ["run", "--artifacts", str(folder), "--backend", backend, "--video", str(clip),
                  "--prompt", "Hi", "--frames", "2", "--warmup", "0", "--max-new-tokens", "1"]
        for backend in BACKENDS
    }  # fmt: skip
    for name, args in commands.items():
        error = one_line_error(args)
        if name == "inspect" or reads_the_folder(name):
            assert message in error and "export it again" in error, (name, error)


def test_a_file_mismatch_names_the_export_that_replaces_it(fp16_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    shutil.copytree(fp16_dir, folder)
    flip_byte(folder / "segment0.onnx")
    error = one_line_error(["inspect", str(folder)])
    assert error.endswith(
        "export it again: earlytom-export --model tiny --retention 0.1 --tau 0.3 --prune-layers 10,21,23 "
        f"--target a100 --builder tensorrt_rtx --token-select onnx --out {folder} --force"
    ), error


def test_missing_folder_file_and_folder_without_manifest_say_which(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    found = {name: one_line_error(["inspect", str(tmp_path / name)]) for name in ("nowhere", "file", "empty")}
    assert "nowhere does not exist" in found["nowhere"]
    assert "file is a file, not a folder" in found["file"]
    assert "empty is a folder without manifest.json" in found["empty"]
    assert len(set(found.values())) == 3
