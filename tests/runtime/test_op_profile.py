"""op_profile: the op ranking and the host-read counts of one profiled call.

On a CPU the profiler runs for real. What a CUDA trace holds is checked twice: on events built the
way torch's profiler builds them from a CUDA trace (the real FunctionEvent and EventList classes:
every kernel is a device event and also a kernel of the op that launched it; runtime calls nest in
that op), and, on a GPU, with the profiler itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch.autograd import DeviceType
from torch.autograd.profiler_util import EventList, FunctionEvent

from earlytom.runtime.op_profile import format_profile, profile_call, summarise


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One CPU thread: waking a thread pool can cost more than a small op and reorder the ranking."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ranks_ops_and_counts_scalar_reads(one_thread: None) -> None:
    x = torch.randn(384, 384)

    def call() -> None:
        for _ in range(3):
            float((x @ x).sum())  # one scalar read each: a host sync on a GPU

    call()  # warm: the profile is of a warm call
    found = profile_call("probe", call, timer_syncs=8)
    assert found.scalar_reads == 3
    assert found.top[0].name == "aten::mm" and found.top[0].calls == 3
    assert found.total_ms >= sum(op.self_ms for op in found.top) - 1e-6
    if not torch.cuda.is_available():
        assert found.clock == "cpu" and found.timer_syncs == 0  # no device, no stage-timer syncs
        assert found.sync_calls == 0 and found.device_to_host_copies == 0 and found.outside_ops_ms == 0
    data = found.to_dict()
    assert data["syncs"]["scalar_reads"] == 3 and data["top_ops"][0]["name"] == "aten::mm"
    assert "scalar reads 3" in format_profile(found)


def test_a_call_without_reads_counts_none(one_thread: None) -> None:
    x = torch.randn(64, 64)
    x @ x  # warm
    found = profile_call("no reads", lambda: x @ x)
    assert found.scalar_reads == 0 and found.device_to_host_copies == 0
    assert found.top[0].name == "aten::mm"


def cuda_shaped_trace() -> EventList:
    """One matmul, one `.item()`, one `.cpu()`, a stage-timer sync and profile_call's own sync."""
    ids = iter(range(1, 100))

    def cpu(name: str, start: float, end: float) -> FunctionEvent:
        return FunctionEvent(id=next(ids), name=name, thread=1, start_us=start, end_us=end, use_device="cuda")

    def kernel(owner: FunctionEvent, name: str, start: float, end: float) -> FunctionEvent:
        owner.append_kernel(name, 0, end - start)  # what the parser does for a linked device event
        return FunctionEvent(id=next(ids), name=name, thread=7, start_us=start, end_us=end, use_device="cuda",
                             device_type=DeviceType.CUDA)  # fmt: skip

    mm, item, scalar, copy = cpu("aten::mm", 0, 100), cpu("aten::item", 110, 150), \
        cpu("aten::_local_scalar_dense", 111, 149), cpu("aten::copy_", 160, 200)  # fmt: skip
    events = [
        mm, cpu("cudaLaunchKernel", 5, 8), kernel(mm, "sm90_xmma_gemm", 10, 60),
        item, scalar, cpu("cudaMemcpyAsync", 112, 120), cpu("cudaStreamSynchronize", 121, 148),
        kernel(scalar, "Memcpy DtoH (Device -> Pageable)", 60, 62),
        copy, cpu("cudaMemcpyAsync", 161, 170), cpu("cudaStreamSynchronize", 171, 199),
        kernel(copy, "Memcpy DtoH (Device -> Pageable)", 62, 65),
        cpu("cudaEventSynchronize", 210, 215), cpu("cudaDeviceSynchronize", 220, 230),
    ]  # fmt: skip
    trace = EventList(events, use_device="cuda")
    trace._build_tree()  # parents and children, as prof.events() has them
    return trace


def test_cuda_trace_counts_device_time_and_syncs_once() -> None:
    found = summarise("cuda", cuda_shaped_trace(), cuda=True, timer_syncs=1, own_syncs=1)
    assert found.clock == "device"
    assert found.total_ms == pytest.approx(0.055)  # 50 + 2 + 3 µs of device events, not twice that
    assert [(op.name, op.calls) for op in found.top] == [("aten::mm", 1), ("aten::copy_", 1),
                                                         ("aten::_local_scalar_dense", 1)]  # fmt: skip
    assert found.top[0].self_ms == pytest.approx(0.050) and found.outside_ops_ms == pytest.approx(0)
    assert found.sync_calls == 1  # the timer's event sync; profile_call's own is left out
    assert found.scalar_reads == 1 and found.device_to_host_copies == 1  # the .cpu(), not the .item()
    assert found.syncs_inside_ops == {"aten::copy_": 1}
    assert "inside ops: aten::copy_ 1" in format_profile(found)


def test_kernels_launched_outside_any_op_are_shown_apart() -> None:
    trace = cuda_shaped_trace()
    alone = FunctionEvent(id=500, name="earlytomTokenSelect", thread=7, start_us=300, end_us=320,
                          use_device="cuda", device_type=DeviceType.CUDA)  # fmt: skip
    found = summarise("cuda", [*trace, alone], cuda=True)
    assert found.total_ms == pytest.approx(0.075) and found.outside_ops_ms == pytest.approx(0.020)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_each_kernel_and_read_counts_once() -> None:
    x = torch.randn(1024, 1024, device="cuda")
    torch.cuda.synchronize()

    def call() -> None:
        for _ in range(3):
            float((x @ x).sum())  # a scalar read: its own copy and sync are not counted again

    call()  # warm: cuBLAS set-up is not part of the profile
    found = profile_call("gpu", call)
    assert found.clock == "device" and found.scalar_reads == 3
    assert found.sync_calls == 0 and found.device_to_host_copies == 0 and found.syncs_inside_ops == {}
    assert found.top[0].name == "aten::mm" and found.top[0].calls == 3
    # The device total counts each kernel once: the ops' self device times add up to it.
    assert sum(op.self_ms for op in found.top) + found.outside_ops_ms == pytest.approx(
        found.total_ms, rel=1e-3
    )
