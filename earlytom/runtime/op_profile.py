"""Where one warm call spends its time, op by op (torch.profiler), and how often it waits on the device.

The bench's stage timers say which stage is large; this says which kernels make it large and how
many host-device synchronisations the call makes (each one drains the GPU queue, so the host
cannot run ahead). The stage timer itself synchronises at every stage boundary, on purpose:
those syncs are counted apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

# Profiler keys that block the host until the device catches up.
SYNC_CALLS = ("cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize")
SCALAR_READS = ("aten::_local_scalar_dense",)  # .item(), int(t), float(t) of a device tensor
DEVICE_TO_HOST = ("Memcpy DtoH",)  # .tolist(), .cpu(), nonzero's size read


@dataclass(frozen=True)
class OpTime:
    name: str
    calls: int
    self_ms: float  # device time where a GPU ran the op, else CPU time


@dataclass(frozen=True)
class OpProfile:
    label: str
    clock: str  # "device" (CUDA kernels) or "cpu"
    total_ms: float  # sum of self times over every op
    top: tuple[OpTime, ...]
    sync_calls: int  # explicit synchronisations (the stage timer's included)
    timer_syncs: int  # of which the stage timer makes (two per stage)
    scalar_reads: int
    device_to_host_copies: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "clock": self.clock,
            "total_self_ms": round(self.total_ms, 3),
            "top_ops": [{"name": o.name, "calls": o.calls, "self_ms": round(o.self_ms, 3)} for o in self.top],
            "syncs": {
                "explicit": self.sync_calls,
                "of_which_stage_timer": self.timer_syncs,
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
            torch.cuda.synchronize()
    events = prof.key_averages()

    def self_us(event: Any) -> float:
        if cuda:
            return float(getattr(event, "self_device_time_total", 0.0))
        return float(event.self_cpu_time_total)

    def count(keys: tuple[str, ...]) -> int:
        return sum(int(e.count) for e in events if any(k in e.key for k in keys))

    timed = sorted((e for e in events if self_us(e) > 0), key=self_us, reverse=True)
    return OpProfile(
        label=label,
        clock="device" if cuda else "cpu",
        total_ms=sum(self_us(e) for e in timed) / 1000.0,
        top=tuple(OpTime(e.key, int(e.count), self_us(e) / 1000.0) for e in timed[:top]),
        sync_calls=count(SYNC_CALLS),
        timer_syncs=timer_syncs if cuda else 0,
        scalar_reads=count(SCALAR_READS),
        device_to_host_copies=count(DEVICE_TO_HOST),
    )


def format_profile(profile: OpProfile, rows: int = 8) -> str:
    lines = [
        f"{profile.label}: {profile.total_ms:.1f} ms of {profile.clock} time; syncs {profile.sync_calls} "
        f"({profile.timer_syncs} by the stage timer), scalar reads {profile.scalar_reads}, "
        f"device-to-host copies {profile.device_to_host_copies}"
    ]
    for op in profile.top[:rows]:
        lines.append(f"  {op.self_ms:>9.2f} ms  {op.calls:>6}×  {op.name[:70]}")
    return "\n".join(lines)
