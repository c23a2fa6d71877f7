"""The artifact contract: one reader, and every malformed or tampered folder is one clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from earlytom.artifact import FORMAT, MANIFEST, Artifact
from earlytom.errors import ArtifactError


@pytest.fixture()
def copy(fp32_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(fp32_dir, folder)
    return folder


def edit(folder: Path, change) -> None:
    path = folder / MANIFEST
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))


def test_a_valid_folder_round_trips(copy: Path) -> None:
    artifact = Artifact.read(copy)
    assert artifact.manifest.format == FORMAT
    assert [s.name for s in artifact.specs] == [s.name for s in artifact.manifest.segments]
    artifact.write()  # atomic rewrite of the same contract
    assert Artifact.read(copy).manifest == artifact.manifest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: [1, 2], "not a JSON object"),
        (lambda d: d | {"format": "earlytom-artifacts/1"}, "export the folder again with this version"),
        (lambda d: {k: v for k, v in d.items() if k != "geometry"}, "field 'geometry' is missing"),
        (lambda d: d | {"opset": "18"}, "field 'opset' has str"),
        (lambda d: d | {"config": d["config"] | {"tau": 0.9}}, "does not match its config_sha256"),
        (lambda d: d | {"config": d["config"] | {"colour": 1}}, "field 'config'"),
        (lambda d: d | {"segments": d["segments"][:-1]}, "declares stages"),
        (
            lambda d: d | {"segments": [s | {"sha256": "0" * 64} for s in d["segments"]]},
            "has changed since export",
        ),
    ],
)
def test_malformed_or_tampered_manifests_are_one_line(copy: Path, change, message: str) -> None:
    edit(copy, change)
    with pytest.raises(ArtifactError, match=message) as caught:
        Artifact.read(copy)
    assert "\n" not in str(caught.value)


def test_missing_files_and_wrong_paths_say_what_they_are(copy: Path, tmp_path: Path) -> None:
    (copy / "head.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"head\.onnx is missing"):
        Artifact.read(copy)
    with pytest.raises(ArtifactError, match="does not exist"):
        Artifact.read(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="is a file"):
        Artifact.read(tmp_path / "file")
    (copy / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        Artifact.read(copy)
