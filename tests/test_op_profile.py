"""op_profile: the op ranking and the host-read counts of one profiled call."""

from __future__ import annotations

import torch

from earlytom.runtime.op_profile import format_profile, profile_call


def test_ranks_ops_and_counts_scalar_reads() -> None:
    x = torch.randn(384, 384)

    def call() -> None:
        for _ in range(3):
            float((x @ x).sum())  # one scalar read each: a host sync on a GPU

    found = profile_call("probe", call, timer_syncs=8)
    assert found.scalar_reads == 3
    assert found.top[0].name == "aten::mm" and found.top[0].calls == 3
    assert found.total_ms >= sum(op.self_ms for op in found.top) - 1e-6
    if not torch.cuda.is_available():
        assert found.clock == "cpu" and found.timer_syncs == 0  # no device, no stage-timer syncs
    data = found.to_dict()
    assert data["syncs"]["scalar_reads"] == 3 and data["top_ops"][0]["name"] == "aten::mm"
    assert "scalar reads 3" in format_profile(found)


def test_a_call_without_reads_counts_none() -> None:
    x = torch.randn(64, 64)
    found = profile_call("no reads", lambda: x @ x)
    assert found.scalar_reads == 0 and found.device_to_host_copies == 0
    assert found.top[0].name == "aten::mm"
