"""Where one warm call spends its time, op by op (torch.profiler), and how often it waits on the device.

The bench's stage timers say which stage is large; this says which kernels make it large and how
many host-device synchronisations the call makes (each one drains the GPU queue, so the host
cannot run ahead). The stage timer itself synchronises at every stage boundary, on purpose:
those syncs are counted apart.

Counting on CUDA, each thing once. A CUDA trace holds every kernel twice: as a device event of
its own, and inside the CPU op that launched it (whose `self_device_time_total` includes it).
So the device total sums the device events only, and the op ranking uses the ops' self device
time; kernels launched outside any op (a ctypes call) show as `outside_ops_ms`. A scalar read
(`.item()`, `int(t)`) is one `aten::_local_scalar_dense` that itself copies to the host and
synchronises: it counts as a scalar read, not also as a sync and a copy. A sync or copy inside
another op (`.cpu()`, `nonzero`'s size read) is counted under that op's name.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

# Profiler names of runtime calls that block the host until the device catches up.
SYNC_CALLS = ("cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize")
SCALAR_READS = ("aten::_local_scalar_dense",)  # .item(), int(t), float(t) of a device tensor
DEVICE_TO_HOST = ("Memcpy DtoH",)  # device-side copies: .tolist(), .cpu(), nonzero's size read
OWN_SYNCS = 1  # profile_call's torch.cuda.synchronize() that lets the trace hold every kernel


@dataclass(frozen=True)
class OpTime:
    name: str
    calls: int
    self_ms: float  # device time where a GPU ran the op, else CPU time


@dataclass(frozen=True)
class OpProfile:
    label: str
    clock: str  # "device" (CUDA kernels) or "cpu"
    total_ms: float  # device: every kernel and copy once; cpu: sum of the ops' self times
    top: tuple[OpTime, ...]
    sync_calls: int  # explicit synchronisations outside any op (the stage timer's included)
    timer_syncs: int  # of which the stage timer makes (two per stage)
    scalar_reads: int  # each also one device-to-host copy and one sync, counted here only
    device_to_host_copies: int  # outside scalar reads
    syncs_inside_ops: dict[str, int] = field(default_factory=dict)  # op -> syncs it made itself
    outside_ops_ms: float = 0.0  # device time of kernels no CPU op launched

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "clock": self.clock,
            "total_self_ms": round(self.total_ms, 3),
            "outside_ops_ms": round(self.outside_ops_ms, 3),
            "top_ops": [{"name": o.name, "calls": o.calls, "self_ms": round(o.self_ms, 3)} for o in self.top],
            "syncs": {
                "explicit": self.sync_calls,
                "of_which_stage_timer": self.timer_syncs,
                "inside_ops": dict(self.syncs_inside_ops),
                "scalar_reads": self.scalar_reads,
                "device_to_host_copies": self.device_to_host_copies,
            },
        }


def profile_call(label: str, call: Callable[[], Any], *, timer_syncs: int = 0, top: int = 15) -> OpProfile:
    """Run `call` once under torch.profiler (CUDA activity when available) and summarise it."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as prof:
        call()
        if cuda:
            torch.cuda.synchronize()  # OWN_SYNCS: kernels still queued would be missing from the trace
    return summarise(label, prof.events(), cuda=cuda, timer_syncs=timer_syncs, top=top,
                     own_syncs=OWN_SYNCS if cuda else 0)  # fmt: skip


def summarise(
    label: str, events: Iterable[Any], *, cuda: bool, timer_syncs: int = 0, top: int = 15, own_syncs: int = 0
) -> OpProfile:
    """An OpProfile from profiler FunctionEvents (`prof.events()`, the tree built)."""
    from torch.autograd import DeviceType

    events = list(events)
    ops = [e for e in events if e.device_type == DeviceType.CPU and not e.is_async]
    if cuda:
        device = [e for e in events if e.device_type != DeviceType.CPU]
        total_us = sum(e.time_range.elapsed_us() for e in device)

        def self_us(event: Any) -> float:
            return float(event.self_device_time_total)
    else:
        device = []

        def self_us(event: Any) -> float:
            return float(event.self_cpu_time_total)

    calls: Counter[str] = Counter()
    times: defaultdict[str, float] = defaultdict(float)
    for event in ops:
        calls[event.name] += 1
        times[event.name] += self_us(event)
    if not cuda:
        total_us = sum(times.values())
    ranked = sorted((name for name in times if times[name] > 0), key=lambda name: times[name], reverse=True)
    explicit, inside = _syncs(ops)
    return OpProfile(
        label=label, clock="device" if cuda else "cpu", total_ms=total_us / 1000.0,
        top=tuple(OpTime(name, calls[name], times[name] / 1000.0) for name in ranked[:top]),
        sync_calls=max(explicit - own_syncs, 0), timer_syncs=timer_syncs if cuda else 0,
        scalar_reads=sum(1 for e in ops if e.name in SCALAR_READS),
        device_to_host_copies=_device_to_host_copies(ops, device), syncs_inside_ops=inside,
        outside_ops_ms=max(total_us - sum(times.values()), 0.0) / 1000.0 if cuda else 0.0,
    )  # fmt: skip


def _ancestors(event: Any) -> Iterator[Any]:
    parent = event.cpu_parent
    while parent is not None:
        yield parent
        parent = parent.cpu_parent


def _enclosing_op(event: Any) -> Any:
    """The innermost aten op `event` runs inside, or None (called from Python directly)."""
    return next((a for a in _ancestors(event) if a.name.startswith("aten::")), None)


def _in_scalar_read(event: Any) -> bool:
    return event.name in SCALAR_READS or any(a.name in SCALAR_READS for a in _ancestors(event))


def _syncs(ops: list[Any]) -> tuple[int, dict[str, int]]:
    """(syncs outside any op, syncs inside ops by op name; scalar reads' own syncs left out)."""
    explicit, inside = 0, Counter[str]()
    for event in ops:
        if not any(key in event.name for key in SYNC_CALLS):
            continue
        owner = _enclosing_op(event)
        if owner is None:
            explicit += 1
        elif not _in_scalar_read(owner):
            inside[owner.name] += 1
    return explicit, dict(inside)


def _device_to_host_copies(ops: list[Any], device: list[Any]) -> int:
    """Device-to-host copies other than scalar reads' (each copy is one device event, also listed
    as a kernel of the op that launched it: counted once, through that op where there is one)."""
    copies = attached = 0
    for event in ops:
        for kernel in event.kernels:
            if any(key in kernel.name for key in DEVICE_TO_HOST):
                attached += 1
                copies += not _in_scalar_read(event)
    launched_alone = sum(1 for e in device if any(k in e.name for k in DEVICE_TO_HOST)) - attached
    return copies + max(launched_alone, 0)


def format_profile(profile: OpProfile, rows: int = 8) -> str:
    inside = ", ".join(f"{name} {n}" for name, n in sorted(profile.syncs_inside_ops.items()))
    lines = [
        f"{profile.label}: {profile.total_ms:.1f} ms of {profile.clock} time"
        + (f" ({profile.outside_ops_ms:.1f} outside any op)" if profile.outside_ops_ms else "")
        + f"; syncs {profile.sync_calls} ({profile.timer_syncs} by the stage timer)"
        + (f", inside ops: {inside}" if inside else "")
        + f", scalar reads {profile.scalar_reads}, device-to-host copies {profile.device_to_host_copies}"
    ]
    for op in profile.top[:rows]:
        lines.append(f"  {op.self_ms:>9.2f} ms  {op.calls:>6}×  {op.name[:70]}")
    return "\n".join(lines)
