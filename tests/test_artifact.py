"""The artifact contract: one reader, and every malformed or tampered folder is one clear error."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from earlytom.artifact import FORMAT, MANIFEST, Artifact, require_writable_folder
from earlytom.errors import ArtifactError, InputError


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
        (lambda d: d | {"format": "earlytom-artifacts/1"}, "this earlytom reads 'earlytom-artifacts/3'"),
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
    with pytest.raises(ArtifactError, match="is not valid JSON"):
        Artifact.read(copy)
    (copy / MANIFEST).write_text("[" * 100_000)
    with pytest.raises(ArtifactError, match="is not valid JSON"):
        Artifact.read(copy)


def test_a_file_changed_after_the_check_never_runs(copy: Path) -> None:
    """Executors take each file's bytes from verified_bytes, hashed as read: a file swapped between
    the folder's check and the session is refused too."""
    from earlytom.exporter.ort_executor import artifact_executors

    artifact = Artifact.read(copy)
    data = bytearray((copy / "select.onnx").read_bytes())
    data[-1] ^= 0x01
    (copy / "select.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"select\.onnx has changed since export"):
        artifact_executors(artifact)
    (copy / "select.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"select\.onnx is missing"):
        artifact.verified_bytes("select.onnx")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d | {"tie_band": -1}, "field 'tie_band' is -1"),
        (lambda d: d | {"precision": "float64"}, "field 'precision' is 'float64'"),
        (lambda d: d | {"versions": {"torch": 2}}, "field 'versions.torch' has int 2"),
        (lambda d: d | {"geometry": d["geometry"] | {"image_size": 0}}, "field 'geometry.image_size' is 0"),
        (lambda d: d | {"segments": [d["segments"][0] | {"file": "/etc/passwd"}, *d["segments"][1:]]},
         "field 'segments\\[0\\].file' is '/etc/passwd', expected a file name inside the folder"),
        (lambda d: d | {"segments": [d["segments"][0] | {"layers": [0]}, *d["segments"][1:]]},
         "field 'segments\\[0\\]' declares segment0 as encoder with layers \\[0\\]"),
    ],
)  # fmt: skip
def test_well_typed_but_impossible_values_name_the_field(copy: Path, change, message: str) -> None:
    edit(copy, change)
    with pytest.raises(ArtifactError, match=message) as caught:
        Artifact.read(copy)
    assert str(caught.value).startswith(str(copy / MANIFEST)) and "\n" not in str(caught.value)


def test_an_unwritable_place_is_found_without_writing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match=r"--out .*file/out is inside .*file, which is a file"):
        require_writable_folder(tmp_path / "file" / "out")
    with pytest.raises(InputError, match="is a file, not a folder"):
        require_writable_folder(tmp_path / "file")
    require_writable_folder(tmp_path / "new" / "deeper")  # creatable: fine, and nothing is created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_found(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(InputError, match="cannot be written"):
            require_writable_folder(locked / "out")
    finally:
        locked.chmod(0o755)
