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


def token_select_function(opset: int = ONNX_OPSET) -> onnx.FunctionProto:
    """The body, in standard ops, of the node `earlytom::EarlyTomTokenSelect`."""
    nodes: list[onnx.NodeProto] = []

    def add(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def const(name: str, values: list[int]) -> str:
        tensor = helper.make_tensor(name, TensorProto.INT64, [len(values)], values)
        return add("Constant", [], name, value=tensor)

    features, scores, frame_kind, budget, token_slots = TOKEN_SELECT.inputs
    zero, one, ax0, ax1, ax2 = const("zero", [0]), const("one", [1]), "zero", "one", const("ax2", [2])
    # Scalars: P, k_d, k_s (each a (1,) int64 tensor).
    shape = add("Shape", [scores], "shape")
    tokens_per_frame = add("Gather", [shape, one], "P")  # (1,)
    k_dynamic = add("Gather", [budget, zero], "k_d")
    k_static = add("Gather", [budget, one], "k_s")
    positions = add(
        "Range",
        [
            add("Squeeze", [zero], "zero_s"),
            add("Squeeze", [tokens_per_frame], "P_s"),
            add("Squeeze", [one], "one_s"),
        ],
        "pos",
    )  # (P,)

    # outranks[t, p, q]: token q beats token p (higher score, or equal score and lower index).
    s_p = add("Unsqueeze", [scores, ax2], "s_p")  # (T, P, 1)
    s_q = add("Unsqueeze", [scores, ax1], "s_q")  # (T, 1, P)
    q_before_p = add(
        "Less",
        [add("Unsqueeze", [positions, ax0], "q_row"), add("Unsqueeze", [positions, ax1], "p_col")],
        "q_before_p",
    )  # (P, P)
    outranks = add(
        "Or",
        [
            add("Greater", [s_q, s_p], "higher"),
            add("And", [add("Equal", [s_q, s_p], "tied"), q_before_p], "tie_won"),
        ],
        "outranks",
    )

    # Dynamic frames: keep p when fewer than k_d tokens beat it (counts are exact in fp32).
    beaten_by = add(
        "ReduceSum", [add("Cast", [outranks], "outranks_f", to=TensorProto.FLOAT), ax2], "rank", keepdims=0
    )  # (T, P)
    dynamic = add("Less", [beaten_by, add("Cast", [k_dynamic], "k_d_f", to=TensorProto.FLOAT)], "dynamic")

    # Static frames: k_s raster windows, the first P mod k_s one longer; keep each window's first arg-max.
    base = add("Div", [tokens_per_frame, k_static], "base")
    long_size = add("Add", [base, one], "long_size")
    long_span = add("Mul", [add("Mod", [tokens_per_frame, k_static], "extra"), long_size], "long_span")
    window = add(
        "Where",
        [
            add("Less", [positions, long_span], "in_long"),
            add("Div", [positions, long_size], "long_window"),
            add(
                "Add",
                ["extra", add("Div", [add("Sub", [positions, long_span], "rest"), base], "short_offset")],
                "short_window",
            ),
        ],
        "window",
    )  # (P,)
    same_window = add(
        "Equal",
        [add("Unsqueeze", [window, ax1], "w_p"), add("Unsqueeze", [window, ax0], "w_q")],
        "same_window",
    )  # (P, P)
    beaten_in_window = add(
        "ReduceMax",
        [
            add("Cast", [add("And", [outranks, same_window], "win_out")], "win_out_f", to=TensorProto.FLOAT),
            ax2,
        ],
        "beaten_in_window",
        keepdims=0,
    )  # (T, P)
    static = add(
        "Equal",
        [
            beaten_in_window,
            add("Constant", [], "zero_f", value=helper.make_tensor("zero_f", TensorProto.FLOAT, [], [0.0])),
        ],
        "static",
    )

    is_static = add("Unsqueeze", [add("Equal", [frame_kind, one], "kind_static"), ax1], "is_static")  # (T, 1)
    # keep = static if the frame is static else dynamic; boolean algebra, as ORT has no bool Where.
    keep = add(
        "Or",
        [
            add("And", [is_static, static], "keep_static"),
            add("And", [add("Not", [is_static], "is_dynamic"), dynamic], "keep_dynamic"),
        ],
        "keep",
    )  # (T, P)

    # Compaction without NonZero (TensorRT-RTX's parser has no NonZero importer): slot n of the
    # N = len(token_slots) outputs is the r-th kept token of frame t, found by counting.
    def to_float(name: str) -> str:
        return add("Cast", [name], name + "_f", to=TensorProto.FLOAT)

    def count(condition: str, axis: str, name: str) -> str:
        return add("ReduceSum", [to_float(condition), axis], name, keepdims=0)

    keep_f = to_float(keep)
    per_frame = add("ReduceSum", [keep_f, ax1], "per_frame", keepdims=0)  # (T,)
    frame_end = add("CumSum", [per_frame, add("Squeeze", [zero], "axis0")], "frame_end")  # (T,) inclusive
    slot_count = add("Squeeze", [add("Shape", [token_slots], "slots_shape")], "slot_count")
    slots = to_float(
        add("Range", ["zero_s", slot_count, "one_s"], "slots")
    )  # (N,); values of token_slots unused
    slot_col = add("Unsqueeze", [slots, ax1], "slot_col")  # (N, 1)
    ends_row = add("Unsqueeze", [frame_end, ax0], "ends_row")  # (1, T)
    slot_frame = add(
        "Cast",
        [count(add("LessOrEqual", [ends_row, slot_col], "frame_done"), ax1, "slot_frame_f")],
        "slot_frame",
        to=TensorProto.INT64,
    )  # (N,)
    frame_start = add("Sub", [frame_end, per_frame], "frame_start")  # (T,)
    slot_rank = add("Sub", [slots, add("Gather", [frame_start, slot_frame], "slot_start")], "slot_rank")
    kept_through = add("CumSum", [keep_f, add("Squeeze", [one], "axis1")], "kept_through")  # (T, P)
    slot_rows = add("Gather", [kept_through, slot_frame], "slot_rows", axis=0)  # (N, P)
    before = add("LessOrEqual", [slot_rows, add("Unsqueeze", [slot_rank, ax1], "rank_col")], "before")
    slot_position = add(
        "Cast", [count(before, ax1, "slot_position_f")], "slot_position", to=TensorProto.INT64
    )
    index_out = TOKEN_SELECT.outputs[1]
    add(
        "Concat",
        [add("Unsqueeze", [slot_frame, ax1], "frame_col"), add("Unsqueeze", [slot_position, ax1], "pos_col")],
        index_out,
        axis=1,
    )  # (N, 2) row-major: frames in time, tokens in raster order
    add("GatherND", [features, index_out], TOKEN_SELECT.outputs[0])  # (N, C)
    return helper.make_function(
        TOKEN_SELECT.domain,
        TOKEN_SELECT.op_type,
        list(TOKEN_SELECT.inputs),
        list(TOKEN_SELECT.outputs),
        nodes,
        [helper.make_opsetid("", opset)],
        attributes=["plugin_namespace", "plugin_version"],
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
