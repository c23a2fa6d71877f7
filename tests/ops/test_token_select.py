"""earlytom::token_select: torch op vs select_tokens, and its ONNX function body in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from op_graphs import P, export_select

from earlytom.compression import TokenBudget, frame_kinds, select_tokens, selected_count, token_budget
from earlytom.ops import TOKEN_SELECT, token_select

C = 6


def inputs(frames: int, groups: list[tuple[int, int]], *, retention: float, seed: int, ties: bool):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(frames, P, C, generator=generator)
    scores = torch.rand(frames, P, generator=generator)
    if ties:  # few distinct values: ties everywhere, the lower index must win on every backend
        scores = (scores * 4).floor() / 4
    kinds = frame_kinds(groups, frames)
    budget = token_budget(P, frames, retention=retention, base_frames=32)
    return (
        features,
        scores,
        torch.tensor(kinds),
        torch.tensor([budget.dynamic, budget.static]),
        torch.arange(selected_count(kinds, budget)),
    )


CASES = [
    (1, [(0, 0)], 0.1),
    (5, [(0, 4)], 0.1),
    (12, [(0, 1), (2, 7), (8, 11)], 0.1),
    (23, [(0, 5), (6, 6), (7, 12), (13, 22)], 0.25),
    (8, [(0, 7)], 1.0),
    (40, [(0, 2), (3, 39)], 0.01),
]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(("frames", "groups", "retention"), CASES)
def test_op_equals_select_tokens(frames, groups, retention, ties) -> None:
    args = inputs(frames, groups, retention=retention, seed=frames, ties=ties)
    tokens, index = token_select(*args)
    expected = select_tokens(args[0], args[1], groups, retention=retention, base_frames=32)
    assert torch.equal(index[:, 0], expected.frame_ids) and torch.equal(index[:, 1], expected.positions)
    assert torch.equal(tokens, expected.tokens)
    assert index.shape[0] == args[4].shape[0]


def test_op_rejects_a_wrong_token_slots() -> None:
    args = list(inputs(4, [(0, 3)], retention=0.1, seed=0, ties=False))
    args[4] = torch.arange(args[4].shape[0] + 1)
    with pytest.raises(ValueError, match="token_slots"):
        token_select(*args)


@pytest.fixture(scope="module")
def onnx_model() -> onnx.ModelProto:
    return export_select(inputs(3, [(0, 2)], retention=0.1, seed=0, ties=False))


def test_exported_as_one_custom_node_with_plugin_attributes(onnx_model) -> None:
    onnx.checker.check_model(onnx_model, full_check=True)
    nodes = [n for n in onnx_model.graph.node if n.domain == TOKEN_SELECT.domain]
    assert [n.op_type for n in nodes] == [TOKEN_SELECT.op_type]
    attributes = {a.name: a.s.decode() for a in nodes[0].attribute}
    assert attributes == {"plugin_namespace": "earlytom", "plugin_version": "1"}
    (function,) = [f for f in onnx_model.functions if f.domain == TOKEN_SELECT.domain]
    body_ops = {n.op_type for n in function.node}
    assert body_ops.isdisjoint({"NonZero", "TopK"}), "the body must stay buildable by TensorRT-RTX"


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(("frames", "groups", "retention"), CASES)
def test_function_body_in_onnxruntime_equals_reference(onnx_model, frames, groups, retention, ties) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_model.SerializeToString())
    args = inputs(frames, groups, retention=retention, seed=100 + frames, ties=ties)
    tokens, index = session.run(None, dict(zip(TOKEN_SELECT.inputs, (a.numpy() for a in args), strict=True)))
    expected_tokens, expected_index = token_select(*args)
    np.testing.assert_array_equal(index, expected_index.numpy())
    np.testing.assert_array_equal(tokens, expected_tokens.numpy())


def test_tensorrt_rtx_builds_the_body_without_a_plugin(onnx_model, tmp_path) -> None:
    trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is installed by scripts/setup.sh")
    path = tmp_path / "select.onnx"
    onnx.save(onnx_model, path)
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(path)), [parser.get_error(i).desc() for i in range(parser.num_errors)]
    kinds = {network.get_layer(i).type.name for i in range(network.num_layers)}
    assert not any(kind.startswith("PLUGIN") for kind in kinds), "no plugin is registered: the body is used"
    config = builder.create_builder_config()
    config.num_compute_capabilities = 1
    config.set_compute_capability(trt.ComputeCapability.SM80, 0)
    profile = builder.create_optimization_profile()
    for name, shape in (("features", (P, C)), ("scores", (P,)), ("frame_kind", ())):
        profile.set_shape(name, (1, *shape), (32, *shape), (64, *shape))
    profile.set_shape("token_slots", (1,), (628,), (64 * P,))
    config.add_optimization_profile(profile)
    assert builder.build_serialized_network(network, config) is not None


def test_budget_is_exact_float64_where_float32_differs() -> None:
    # Why the budget is an input: float32 gets k_d wrong here, the planner's float64 does not.
    budget = token_budget(P, 28, retention=0.25, base_frames=32)
    assert budget == TokenBudget(dynamic=56, static=56)
    scaled32 = np.float32(0.25) * np.float32(32) / np.float32(28)
    assert int(np.ceil(np.float32(P) * scaled32)) == 57
