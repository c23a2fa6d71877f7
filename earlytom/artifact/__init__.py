"""The exported folder as one typed contract: `Manifest` (manifest.json) and `Artifact` (folder + manifest).

`Artifact.read` is the only reader of manifest.json: it checks the format version, every field's
presence, type and value (a malformed manifest is one line naming the field), the EarlyTom setting
against its own hash, the declared stage I/O against the code's, and every file the folder holds
(ONNX segments, plans, plugin libraries) against its recorded sha256. Writes are atomic (temp file
+ rename); `require_writable_folder` finds an output place that cannot be written before any work.
"""

from earlytom.artifact.folder import (
    Artifact,
    file_sha256,
    package_versions,
    require_writable_folder,
    write_json_atomic,
)
from earlytom.artifact.manifest import (
    FORMAT,
    MANIFEST,
    EngineEntry,
    EngineSet,
    FrameProfile,
    Geometry,
    Manifest,
    ModelEntry,
    PluginEntry,
    SegmentEntry,
    TensorEntry,
    ValidationSummary,
    reexport_hint,
)

__all__ = [
    "FORMAT",
    "MANIFEST",
    "Artifact",
    "EngineEntry",
    "EngineSet",
    "FrameProfile",
    "Geometry",
    "Manifest",
    "ModelEntry",
    "PluginEntry",
    "SegmentEntry",
    "TensorEntry",
    "ValidationSummary",
    "file_sha256",
    "package_versions",
    "reexport_hint",
    "require_writable_folder",
    "write_json_atomic",
]
