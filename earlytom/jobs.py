"""The `earlytom-export` job composed: export_segments -> build_engines -> manifest, atomically.

Nothing appears at the output folder unless every step succeeds: the work happens in a staging
folder beside it, renamed only at the end; an existing folder is replaced only with `force`.
SIGINT, SIGTERM and SIGHUP stop the job as `Interrupted` and remove the staging folder; a staging
folder that a killed job (SIGKILL, a power cut) left behind is removed by the next export to the
same place (each live one holds a lock on its folder, so a running export's is left alone).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from earlytom.artifact import Artifact, require_writable_folder
from earlytom.engines.build import BuildConfig, build_engines
from earlytom.errors import ExportError
from earlytom.exporter.export import ExportSpec, export_segments

Progress = Callable[[str], None]
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The job was stopped by a signal; the staging folder is gone and `out_dir` is as it was."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def run_export(
    spec: ExportSpec,
    out_dir: Path,
    build: BuildConfig | None,
    *,
    force: bool = False,
    plugin_library: Path | None = None,
    progress: Progress = lambda _: None,
) -> Artifact:
    """ONNX stages + validation.json (+ plans unless `build` is None) + manifest.json in `out_dir`."""
    if build is not None and spec.token_select == "plugin":
        require_plugin_library(plugin_library)  # fail before minutes of export, not after
    with staged_output(out_dir, force=force, progress=progress) as stage:
        plugin = spec.token_select == "plugin"
        progress(f"TokenSelect as {'the EarlyTomTokenSelect plugin' if plugin else 'standard ONNX ops'}")
        artifact = export_segments(spec, stage, progress)
        if build is not None:
            artifact = build_engines(artifact, build, plugin_library=plugin_library, progress=progress)
        artifact.write()
    progress(f"wrote {out_dir}")
    # The files were hashed as they were written; the renamed folder needs no second pass over them.
    return replace(artifact, folder=out_dir.resolve())


def resolve_token_select(mode: str, plugin_library: Path | None) -> str:
    """auto -> plugin when a plugin library is at hand (given, or built by `earlytom build-plugins`)."""
    from earlytom.trt_plugins.library import find_plugin_library

    if mode != "auto":
        return mode
    return "plugin" if find_plugin_library(plugin_library) is not None else "onnx"


def require_plugin_library(plugin_library: Path | None) -> None:
    from earlytom.trt_plugins.library import find_plugin_library

    if find_plugin_library(plugin_library) is None:
        raise ExportError(
            "--token-select plugin needs the EarlyTomTokenSelect plugin library: run "
            "'earlytom build-plugins' first, or export with --token-select onnx"
        )


@contextlib.contextmanager
def staged_output(out_dir: Path, *, force: bool, progress: Progress = lambda _: None) -> Iterator[Path]:
    """Yield a temp folder beside `out_dir`; it becomes `out_dir` only if the block succeeds.
    Signals raise `Interrupted` inside the block; making the stage and the clean-up hold them back
    until they are done, and one that comes during the final rename is too late to stop it."""
    out_dir = out_dir.resolve()
    require_writable_folder(out_dir, "--out", beside=True)
    if out_dir.exists() and not force:
        raise ExportError(f"output folder {out_dir} already exists: pass --force to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_stages(out_dir, progress)
    with _Signals() as signals:
        stage, lock = None, None
        try:
            with signals.held():  # a signal now is raised once the stage is known, so it is removed
                stage, lock = _locked_stage(out_dir)
            yield stage
            with signals.held(too_late=True):
                _swap(stage, out_dir)
        finally:
            with signals.held():
                if stage is not None and stage.exists():
                    shutil.rmtree(stage, ignore_errors=True)
                if lock is not None:
                    os.close(lock)


def _swap(stage: Path, out_dir: Path) -> None:
    """`stage` becomes `out_dir`, replacing a previous folder there."""
    os.chmod(stage, 0o777 & ~_umask())  # mkdtemp's 0700 would make the result private
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, old / out_dir.name)
        os.replace(stage, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, out_dir)


def remove_stale_stages(out_dir: Path, progress: Progress) -> None:
    """Remove the staging folders of exports to `out_dir` that died; report any still running."""
    for stale in sorted(out_dir.parent.glob(f".{out_dir.name}.partial-*")):
        try:
            fd = os.open(stale, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue  # gone meanwhile, or not a folder
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            progress(f"left {stale} alone: an export to {out_dir} is still writing it")
        else:
            shutil.rmtree(stale, ignore_errors=True)  # under its lock: its owner is gone
            progress(f"removed {stale}, left behind by an export that was killed")
        finally:
            os.close(fd)


def _locked_stage(out_dir: Path) -> tuple[Path, int]:
    """A new staging folder and an open descriptor holding its lock (released when the process dies)."""
    while True:
        stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
        fd = os.open(stage, os.O_RDONLY | os.O_DIRECTORY)
        with contextlib.suppress(OSError):  # a file system without locks: stale folders are then reported
            fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink > 0:  # not removed by a concurrent clean-up before the lock was taken
            return stage, fd
        os.close(fd)


class _Signals:
    """SIGINT, SIGTERM and SIGHUP raise Interrupted while installed (main thread only: elsewhere
    nothing changes); inside `held()` the first one waits for the end of the block."""

    def __init__(self) -> None:
        self.holding, self.pending = 0, 0
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        with contextlib.suppress(ValueError):  # signal handlers can only be set from the main thread
            for signum in SIGNALS:
                self.previous[signum] = signal.signal(signum, self._stop)
        return self

    def __exit__(self, *_: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _stop(self, signum: int, _frame: object) -> None:
        # Python runs handlers in the main thread, whichever thread the signal reached.
        if self.holding:
            self.pending = self.pending or signum
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def held(self, *, too_late: bool = False) -> Iterator[None]:
        """The block runs to its end; a signal it held is raised then, or dropped when `too_late`."""
        self.holding += 1
        try:
            yield
        finally:
            self.holding -= 1
        signum, self.pending = self.pending, 0
        if signum and not too_late:
            raise Interrupted(signum)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
