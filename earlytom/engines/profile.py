"""`earlytom profile`: per-engine latency at the shapes a real video produces (DESIGN §5).

1. Run the folder's ONNX segments once on the video (ONNX Runtime + the planner) and record what
   each stage receives: frame counts, and the select stage's frame kinds, budget and N.
2. Per plan, either the exact trtexec command (with those shapes and the recorded integer inputs,
   saved as .bin files), run when the tool is on PATH, or CUDA-event timing from Python.

Everything is written into the output folder only, and only once the run can finish: the folder,
its plans, the timing tool or a GPU and the output place are checked first, and a failure part way
(Ctrl-C included) removes what the run wrote.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from earlytom.artifact import Artifact, EngineSet, require_writable_folder, write_json_atomic
from earlytom.errors import InputError, MissingDependencyError
from earlytom.exporter.ort_executor import artifact_executors
from earlytom.vision_path import VisionPath, planner_for

Progress = Callable[[str], None]
# Inputs whose values steer the work (or must be consistent): loaded from the recorded run.
RECORDED_INPUTS = ("scores", "frame_kind", "budget", "token_slots")
TOOLS = {"tensorrt": "trtexec", "tensorrt_rtx": "tensorrt_rtx"}
PYTHON_TIMING = "python-cuda-events"


@dataclass(frozen=True)
class SegmentShapes:
    name: str
    plan: Path
    frames: int
    shapes: dict[str, tuple[int, ...]]
    input_files: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentTiming:
    name: str
    frames: int
    times_ms: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "segment": self.name,
            "frames": self.frames,
            **percentiles(self.times_ms),
            "times_ms": self.times_ms,
        }


def percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered), 4), "p90_ms": round(p90, 4)}


def record_shapes(
    artifact: Artifact, video: Path, num_frames: int, inputs_dir: Path, *, allow_partial: bool = False
) -> list[SegmentShapes]:
    """Run the ONNX chain on `video`; the shapes (and integer inputs, saved) each plan will see.
    `allow_partial`: a truncated video is sampled from the frames that decode."""
    from earlytom.models.preprocess import preprocess_frames
    from earlytom.models.video import load_video

    engines = _engines(artifact)
    manifest = artifact.manifest
    executors = [*artifact_executors(artifact)]
    planner = planner_for(manifest.config, tie_band=manifest.tie_band)
    path = VisionPath(executors, planner, tokens_per_frame=manifest.geometry.pooled_tokens_per_frame)
    frames = load_video(video, num_frames, allow_partial=allow_partial).frames
    pixels = preprocess_frames(frames, size=manifest.geometry.image_size)
    tokens = path.run(pixels, record=True)
    path.release()
    inputs_dir.mkdir(parents=True, exist_ok=True)
    shapes = []
    for record in tokens.records:
        files = {}
        for name in RECORDED_INPUTS:
            if name in record.inputs:
                file = inputs_dir / f"{record.name}.{name}.bin"
                record.inputs[name].contiguous().numpy().tofile(
                    file
                )  # raw bytes, as trtexec --loadInputs reads
                files[name] = file
        first = next(iter(record.inputs.values()))
        shapes.append(
            SegmentShapes(
                name=record.name,
                plan=artifact.path(engines.entry(record.name).file),
                frames=int(first.shape[0]),
                shapes={name: tuple(t.shape) for name, t in record.inputs.items()},
                input_files=files,
            )
        )
    return shapes


def _engines(artifact: Artifact) -> EngineSet:
    if artifact.manifest.engines is None:
        raise InputError(f"{artifact.folder} has no engines (exported with --skip-build): nothing to profile")
    return artifact.manifest.engines


def plugin_flag(artifact: Artifact) -> list[str]:
    """How the tool loads the TokenSelect plugin: statically for full TensorRT, dynamically for RTX."""
    engines = _engines(artifact)
    plugin = engines.plugin
    if plugin is None:
        return []
    if engines.builder == "tensorrt" and plugin.static_file:
        return [f"--staticPlugins={artifact.path(plugin.static_file)}"]
    return [f"--dynamicPlugins={artifact.path(plugin.file)}"]


def tool_commands(
    artifact: Artifact, segments: list[SegmentShapes], *, times_dir: Path, iterations: int, warmup_ms: int
) -> list[list[str]]:
    """One trtexec (tensorrt_rtx for TensorRT-RTX plans) command per plan, with measured shapes."""
    engines = _engines(artifact)
    tool = TOOLS[engines.builder]
    commands = []
    for segment in segments:
        shapes = ",".join(f"{name}:{'x'.join(str(d) for d in dims)}" for name, dims in segment.shapes.items())
        command = [tool, f"--loadEngine={segment.plan}", f"--shapes={shapes}"]
        if segment.input_files:
            command.append("--loadInputs=" + ",".join(f"{n}:{p}" for n, p in segment.input_files.items()))
        if engines.entry(segment.name).needs_plugin:
            command.extend(plugin_flag(artifact))
        command += [
            "--useCudaGraph", "--noDataTransfers", "--separateProfileRun", "--dumpProfile",
            f"--iterations={iterations}", f"--warmUp={warmup_ms}",
            f"--exportTimes={times_dir / (segment.name + '.times.json')}",
        ]  # fmt: skip
        commands.append(command)
    return commands


def run_tool(command: list[str], times_file: Path) -> list[float]:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise InputError(f"{command[0]} failed on {shlex.join(command[:2])}: {last[0]}")
    entries = json.loads(times_file.read_text())
    return [round(e["endComputeMs"] - e["startComputeMs"], 4) for e in entries]


def time_in_python(
    artifact: Artifact, segments: list[SegmentShapes], *, iterations: int, warmup: int, progress: Progress
) -> list[SegmentTiming]:
    """CUDA-event timing of each plan with the recorded inputs (median of `iterations` after warm-up)."""
    if not torch.cuda.is_available():
        raise InputError(
            "timing the plans needs an NVIDIA GPU and none is visible: use --print-commands to get "
            "the trtexec commands and run them on the target machine"
        )
    from earlytom.engines.runner import tensorrt_executors

    executors = {e.spec.name: e for e in tensorrt_executors(artifact, torch.device("cuda"))}
    timings = []
    for segment in segments:
        progress(f"timing {segment.name} at {segment.frames} frames")
        engine = executors[segment.name]
        feed = _feed(segment)
        for _ in range(warmup):
            engine(feed)
        times = []
        for _ in range(iterations):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            engine(feed)
            stop.record()
            stop.synchronize()
            times.append(round(start.elapsed_time(stop), 4))
        timings.append(SegmentTiming(segment.name, segment.frames, times))
    return timings


def _feed(segment: SegmentShapes) -> dict[str, torch.Tensor]:
    """Recorded integer inputs from their files; float activations random but real-valued (never zeros)."""
    import numpy as np

    generator = torch.Generator().manual_seed(0)
    feed = {}
    for name, shape in segment.shapes.items():
        if name in segment.input_files:
            dtype = np.float32 if name == "scores" else np.int64
            feed[name] = torch.from_numpy(np.fromfile(segment.input_files[name], dtype=dtype).reshape(shape))
        else:
            feed[name] = torch.randn(shape, generator=generator)
    return {name: tensor.cuda() for name, tensor in feed.items()}


def default_profile_folder(folder: Path) -> Path:
    """Where a profile goes unless told: beside the artifact folder, which is never written to."""
    folder = Path(folder)
    return folder.with_name(folder.name + "-profile")


def timing_method(engines: EngineSet) -> str:
    """The tool (trtexec, or tensorrt_rtx for TensorRT-RTX plans) when on PATH, else CUDA events
    from Python; with neither a tool nor a GPU the plans cannot be timed here."""
    tool = TOOLS[engines.builder]
    if shutil.which(tool):
        return tool
    if not torch.cuda.is_available():
        raise InputError(
            f"timing the plans needs {tool} on PATH or an NVIDIA GPU, and this machine has neither: use "
            f"--print-commands to get the {tool} commands and run them on the target machine"
        )
    return PYTHON_TIMING


def profile_artifacts(
    folder: Path,
    video: Path,
    *,
    out_dir: Path | None = None,
    num_frames: int = 32,
    iterations: int = 50,
    warmup: int = 10,
    commands_only: bool = False,
    allow_partial: bool = False,
    progress: Progress = lambda _: None,
) -> dict[str, Any]:
    """Record shapes on `video`, then the tool's commands (and run them) or Python timings; the
    report is also written to `out_dir`/profile.json unless `commands_only`."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "profiling records shapes with onnxruntime: pip install 'earlytom[onnx]'"
        ) from exc
    if out_dir is not None:
        require_writable_folder(Path(out_dir))
    artifact = Artifact.read(Path(folder))
    engines = _engines(artifact)
    method = None if commands_only else timing_method(engines)
    out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="earlytom-profile-"))
    with removed_on_failure(out_dir):
        progress(f"running the exported segments once on {video} ({num_frames} frames) to record shapes")
        segments = record_shapes(
            artifact, Path(video), num_frames, out_dir / "inputs", allow_partial=allow_partial
        )
        commands = tool_commands(artifact, segments, times_dir=out_dir, iterations=iterations, warmup_ms=500)
        report: dict[str, Any] = {
            "folder": str(artifact.folder.resolve()),
            "video": str(video),
            "frames_per_segment": {s.name: s.frames for s in segments},
            "commands": [shlex.join(c) for c in commands],
            "builder": engines.builder,
            "method": method,
            "segments": [],
        }
        if method is None:
            return report
        if method == PYTHON_TIMING:
            progress(
                f"{TOOLS[engines.builder]} is not on PATH: timing each plan from Python with CUDA events"
            )
            timings = time_in_python(
                artifact, segments, iterations=iterations, warmup=warmup, progress=progress
            )
            report["device"] = torch.cuda.get_device_name()
        else:
            progress(f"running {method} per plan")
            timings = [
                SegmentTiming(s.name, s.frames, run_tool(c, out_dir / f"{s.name}.times.json"))
                for s, c in zip(segments, commands, strict=True)
            ]
        report["segments"] = [t.to_dict() for t in timings]
        write_json_atomic(out_dir / "profile.json", report)
    return report


@contextlib.contextmanager
def removed_on_failure(folder: Path) -> Iterator[None]:
    """On any failure (Ctrl-C included) remove what the block wrote: the folder when the block
    created it, else only the files and folders that are new in it."""
    existed = folder.exists()
    before = set(folder.rglob("*")) if existed else set()
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for path in sorted(set(folder.rglob("*")) - before, reverse=True):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        raise
