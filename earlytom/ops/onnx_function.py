"""The ONNX form of `earlytom::token_select`: one custom-domain node plus a model-local function.

ONNX Runtime runs the function body; TensorRT uses the plugin named by the node's
`plugin_namespace`/`plugin_version` when one is registered, else it inlines the body. The body
uses only elementwise ops, comparisons, reductions, CumSum and gathers: no TopK (TensorRT does not
promise its tie order; counting keeps the reference's rule, the lower index wins) and no NonZero
(TensorRT-RTX's parser has no importer for it). The output count N comes in as the length of
`token_slots`, an (N,) int64 input the planner sizes (N = dynamic frames·k_d + static frames·k_s),
so every output shape follows from input shapes and every TensorRT can build it.
"""

from __future__ import annotations

from typing import Any

import onnx
from onnx import TensorProto, helper

from earlytom.ops.token_select import TOKEN_SELECT

ONNX_OPSET = 18  # ONNX Runtime and TensorRT >= 10 (and TensorRT-RTX 1.x) all parse opset 18


# Names of the shared (1,) int64 constants; "zero"/"one" double as the axis inputs 0 and 1.
_ZERO, _ONE, _AX2 = "zero", "one", "ax2"
_AX0, _AX1 = _ZERO, _ONE


class _Body:
    """Collects the function body's nodes; creation order is the serialized order, so keep it stable."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []

    def add(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def const(self, name: str, values: list[int]) -> str:
        tensor = helper.make_tensor(name, TensorProto.INT64, [len(values)], values)
        return self.add("Constant", [], name, value=tensor)

    def to_float(self, name: str) -> str:
        return self.add("Cast", [name], name + "_f", to=TensorProto.FLOAT)

    def count(self, condition: str, axis: str, name: str) -> str:
        """How many entries of `condition` are true along `axis` (exact in fp32 at these sizes)."""
        return self.add("ReduceSum", [self.to_float(condition), axis], name, keepdims=0)


def token_select_function(opset: int = ONNX_OPSET) -> onnx.FunctionProto:
    """The body, in standard ops, of the node `earlytom::EarlyTomTokenSelect`."""
    body = _Body()
    features, scores, frame_kind, budget, token_slots = TOKEN_SELECT.inputs
    for name, value in ((_ZERO, 0), (_ONE, 1), (_AX2, 2)):
        body.const(name, [value])
    tokens_per_frame, k_dynamic, k_static, positions = _frame_scalars(body, scores, budget)
    outranks = _outranks(body, scores, positions)
    dynamic = _dynamic_keep(body, outranks, k_dynamic)
    static = _static_keep(body, outranks, positions, tokens_per_frame, k_static)
    keep = _combine_keep(body, frame_kind, static, dynamic)
    _compact(body, features, keep, token_slots)
    return helper.make_function(
        TOKEN_SELECT.domain,
        TOKEN_SELECT.op_type,
        list(TOKEN_SELECT.inputs),
        list(TOKEN_SELECT.outputs),
        body.nodes,
        [helper.make_opsetid("", opset)],
        attributes=["plugin_namespace", "plugin_version"],
    )


def _frame_scalars(body: _Body, scores: str, budget: str) -> tuple[str, str, str, str]:
    """P, k_d, k_s (each a (1,) int64 tensor) and the (P,) token positions 0..P-1."""
    shape = body.add("Shape", [scores], "shape")
    tokens_per_frame = body.add("Gather", [shape, _ONE], "P")  # (1,)
    k_dynamic = body.add("Gather", [budget, _ZERO], "k_d")
    k_static = body.add("Gather", [budget, _ONE], "k_s")
    positions = body.add(
        "Range",
        [
            body.add("Squeeze", [_ZERO], "zero_s"),
            body.add("Squeeze", [tokens_per_frame], "P_s"),
            body.add("Squeeze", [_ONE], "one_s"),
        ],
        "pos",
    )  # (P,)
    return tokens_per_frame, k_dynamic, k_static, positions


def _outranks(body: _Body, scores: str, positions: str) -> str:
    """outranks[t, p, q]: token q beats token p (higher score, or equal score and lower index)."""
    s_p = body.add("Unsqueeze", [scores, _AX2], "s_p")  # (T, P, 1)
    s_q = body.add("Unsqueeze", [scores, _AX1], "s_q")  # (T, 1, P)
    q_before_p = body.add(
        "Less",
        [
            body.add("Unsqueeze", [positions, _AX0], "q_row"),
            body.add("Unsqueeze", [positions, _AX1], "p_col"),
        ],
        "q_before_p",
    )  # (P, P)
    return body.add(
        "Or",
        [
            body.add("Greater", [s_q, s_p], "higher"),
            body.add("And", [body.add("Equal", [s_q, s_p], "tied"), q_before_p], "tie_won"),
        ],
        "outranks",
    )


def _dynamic_keep(body: _Body, outranks: str, k_dynamic: str) -> str:
    """Dynamic frames: keep p when fewer than k_d tokens beat it (counts are exact in fp32)."""
    beaten_by = body.add("ReduceSum", [body.to_float(outranks), _AX2], "rank", keepdims=0)  # (T, P)
    return body.add("Less", [beaten_by, body.to_float(k_dynamic)], "dynamic")


def _static_windows(body: _Body, positions: str, tokens_per_frame: str, k_static: str) -> str:
    """The (P,) window index of each position: k_s raster windows, the first P mod k_s one longer."""
    base = body.add("Div", [tokens_per_frame, k_static], "base")
    long_size = body.add("Add", [base, _ONE], "long_size")
    extra = body.add("Mod", [tokens_per_frame, k_static], "extra")
    long_span = body.add("Mul", [extra, long_size], "long_span")
    in_long = body.add("Less", [positions, long_span], "in_long")
    long_window = body.add("Div", [positions, long_size], "long_window")
    rest = body.add("Sub", [positions, long_span], "rest")
    short_window = body.add("Add", [extra, body.add("Div", [rest, base], "short_offset")], "short_window")
    return body.add("Where", [in_long, long_window, short_window], "window")  # (P,)


def _static_keep(body: _Body, outranks: str, positions: str, tokens_per_frame: str, k_static: str) -> str:
    """Static frames: keep each window's first arg-max, i.e. the token nothing in its window beats."""
    window = _static_windows(body, positions, tokens_per_frame, k_static)
    same_window = body.add(
        "Equal",
        [body.add("Unsqueeze", [window, _AX1], "w_p"), body.add("Unsqueeze", [window, _AX0], "w_q")],
        "same_window",
    )  # (P, P)
    win_out = body.add("And", [outranks, same_window], "win_out")
    beaten_in_window = body.add(
        "ReduceMax", [body.to_float(win_out), _AX2], "beaten_in_window", keepdims=0
    )  # (T, P)
    zero_f = helper.make_tensor("zero_f", TensorProto.FLOAT, [], [0.0])
    return body.add("Equal", [beaten_in_window, body.add("Constant", [], "zero_f", value=zero_f)], "static")


def _combine_keep(body: _Body, frame_kind: str, static: str, dynamic: str) -> str:
    """keep = static if the frame is static else dynamic; boolean algebra, as ORT has no bool Where."""
    kind_static = body.add("Equal", [frame_kind, _ONE], "kind_static")
    is_static = body.add("Unsqueeze", [kind_static, _AX1], "is_static")  # (T, 1)
    return body.add(
        "Or",
        [
            body.add("And", [is_static, static], "keep_static"),
            body.add("And", [body.add("Not", [is_static], "is_dynamic"), dynamic], "keep_dynamic"),
        ],
        "keep",
    )  # (T, P)


def _compact(body: _Body, features: str, keep: str, token_slots: str) -> None:
    """Compaction without NonZero (TensorRT-RTX's parser has no NonZero importer).

    Slot n of the N = len(token_slots) outputs is the r-th kept token of frame t, found by counting.
    """
    keep_f = body.to_float(keep)
    per_frame = body.add("ReduceSum", [keep_f, _AX1], "per_frame", keepdims=0)  # (T,)
    slots, slot_frame, frame_end = _slot_frames(body, per_frame, token_slots)
    frame_start = body.add("Sub", [frame_end, per_frame], "frame_start")  # (T,)
    slot_start = body.add("Gather", [frame_start, slot_frame], "slot_start")
    slot_rank = body.add("Sub", [slots, slot_start], "slot_rank")
    slot_position = _slot_positions(body, keep_f, slot_frame, slot_rank)
    index_out = TOKEN_SELECT.outputs[1]
    body.add(
        "Concat",
        [
            body.add("Unsqueeze", [slot_frame, _AX1], "frame_col"),
            body.add("Unsqueeze", [slot_position, _AX1], "pos_col"),
        ],
        index_out,
        axis=1,
    )  # (N, 2) row-major: frames in time, tokens in raster order
    body.add("GatherND", [features, index_out], TOKEN_SELECT.outputs[0])  # (N, C)


def _slot_frames(body: _Body, per_frame: str, token_slots: str) -> tuple[str, str, str]:
    """The (N,) fp32 slot numbers, each slot's (N,) frame, and the (T,) inclusive frame ends."""
    axis0 = body.add("Squeeze", [_ZERO], "axis0")
    frame_end = body.add("CumSum", [per_frame, axis0], "frame_end")  # (T,) inclusive
    slot_count = body.add("Squeeze", [body.add("Shape", [token_slots], "slots_shape")], "slot_count")
    # (N,); only the length of token_slots matters, its values are unused. zero_s/one_s are the
    # scalar 0 and 1 that _frame_scalars made for `pos`.
    slots = body.to_float(body.add("Range", ["zero_s", slot_count, "one_s"], "slots"))
    slot_col = body.add("Unsqueeze", [slots, _AX1], "slot_col")  # (N, 1)
    ends_row = body.add("Unsqueeze", [frame_end, _AX0], "ends_row")  # (1, T)
    # A slot's frame is the number of frames that end at or before it.
    frame_done = body.add("LessOrEqual", [ends_row, slot_col], "frame_done")
    slot_frame = body.add(
        "Cast", [body.count(frame_done, _AX1, "slot_frame_f")], "slot_frame", to=TensorProto.INT64
    )  # (N,)
    return slots, slot_frame, frame_end


def _slot_positions(body: _Body, keep_f: str, slot_frame: str, slot_rank: str) -> str:
    """Each slot's (N,) token position: the count of positions whose kept-so-far is <= its rank."""
    kept_through = body.add(
        "CumSum", [keep_f, body.add("Squeeze", [_ONE], "axis1")], "kept_through"
    )  # (T, P)
    slot_rows = body.add("Gather", [kept_through, slot_frame], "slot_rows", axis=0)  # (N, P)
    rank_col = body.add("Unsqueeze", [slot_rank, _AX1], "rank_col")
    before = body.add("LessOrEqual", [slot_rows, rank_col], "before")
    return body.add(
        "Cast", [body.count(before, _AX1, "slot_position_f")], "slot_position", to=TensorProto.INT64
    )


def register_token_select_schema() -> None:
    """Make `earlytom::EarlyTomTokenSelect` a known op for onnx (checker, onnxscript); idempotent."""
    if onnx.defs.has(TOKEN_SELECT.op_type, TOKEN_SELECT.domain):
        return
    param = onnx.defs.OpSchema.FormalParameter
    attribute = onnx.defs.OpSchema.Attribute
    schema = onnx.defs.OpSchema(
        TOKEN_SELECT.op_type,
        TOKEN_SELECT.domain,
        1,
        doc="Stage II token selection of EarlyTom (dynamic top-k / static window arg-max).",
        inputs=[
            param("features", "T"),
            param("scores", "tensor(float)"),
            param("frame_kind", "tensor(int64)"),
            param("budget", "tensor(int64)"),
            param("token_slots", "tensor(int64)"),
        ],
        outputs=[param("tokens", "T"), param("token_index", "tensor(int64)")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "feature type")],
        attributes=[
            attribute("plugin_namespace", onnx.defs.OpSchema.AttrType.STRING, "TensorRT plugin namespace"),
            attribute("plugin_version", onnx.defs.OpSchema.AttrType.STRING, "TensorRT plugin version"),
        ],
    )
    onnx.defs.register_schema(schema)


def token_select_translation() -> Any:
    """The onnxscript function the dynamo exporter calls for torch.ops.earlytom.token_select."""
    from onnxscript import values

    register_token_select_schema()
    node = getattr(values.Opset(TOKEN_SELECT.domain, 1), TOKEN_SELECT.op_type)

    def translate(features: Any, scores: Any, frame_kind: Any, budget: Any, token_slots: Any) -> Any:
        return node(
            features,
            scores,
            frame_kind,
            budget,
            token_slots,
            plugin_namespace=TOKEN_SELECT.plugin_namespace,
            plugin_version=TOKEN_SELECT.plugin_version,
            _outputs=len(TOKEN_SELECT.outputs),
        )

    return translate


def attach_token_select_function(model: onnx.ModelProto) -> onnx.ModelProto:
    """Add the function body (and the custom domain's opset) to a model that uses the node."""
    if not uses_token_select_node(model):
        return model
    kept = [f for f in model.functions if (f.domain, f.name) != (TOKEN_SELECT.domain, TOKEN_SELECT.op_type)]
    del model.functions[:]
    model.functions.extend([*kept, token_select_function()])
    if not any(o.domain == TOKEN_SELECT.domain for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(TOKEN_SELECT.domain, 1))
    return model


def inline_token_select_function(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model with every TokenSelect node replaced by its body: standard ops only."""
    import onnx.inliner

    inlined = onnx.inliner.inline_selected_functions(model, [(TOKEN_SELECT.domain, TOKEN_SELECT.op_type)])
    kept = [o for o in inlined.opset_import if o.domain != TOKEN_SELECT.domain]
    del inlined.opset_import[:]
    inlined.opset_import.extend(kept)
    return inlined


def uses_token_select_node(model: onnx.ModelProto) -> bool:
    return any(
        n.domain == TOKEN_SELECT.domain and n.op_type == TOKEN_SELECT.op_type for n in model.graph.node
    )
