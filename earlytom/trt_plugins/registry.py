"""Put the EarlyTomTokenSelect creator into a TensorRT (or TensorRT-RTX) plugin registry.

The library is loaded with `IPluginRegistry.load_library`, which calls its `getCreators`; it must
happen before an ONNX graph with the plugin node is parsed and before a plan that uses the plugin
is deserialised (a plan stores only the plugin's name, version and namespace).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from earlytom.errors import InputError
from earlytom.ops.token_select import TOKEN_SELECT
from earlytom.trt_plugins.library import STATIC_LIBRARY

_loaded: dict[tuple[str, str], Any] = {}  # (trt module, library path) -> handle, one load per process


def token_select_registered(trt: Any) -> bool:
    registry = trt.get_plugin_registry()
    return any(
        c.name == TOKEN_SELECT.op_type
        and c.plugin_namespace == TOKEN_SELECT.plugin_namespace
        and c.plugin_version == TOKEN_SELECT.plugin_version
        for c in registry.all_creators
    )


def load_plugin_library(trt: Any, library: Path) -> None:
    """Register the library's creators with `trt` (tensorrt or tensorrt_rtx); idempotent."""
    library = library.resolve()
    if library.name == STATIC_LIBRARY and trt.__name__ == "tensorrt_rtx":
        raise InputError(
            f"{library.name} registers itself statically, which TensorRT-RTX does not support: "
            "load libearlytom_plugins.so instead"
        )
    key = (trt.__name__, str(library))
    if key in _loaded:
        return
    if not library.is_file():
        raise InputError(f"plugin library {library} does not exist: run 'earlytom build-plugins'")
    if trt.__name__ == "tensorrt_rtx":
        ensure_rtx_parser_can_load_plugins(trt, create=False)
    handle = trt.get_plugin_registry().load_library(str(library))
    if handle is None or not token_select_registered(trt):
        raise InputError(
            f"{library} did not register {TOKEN_SELECT.op_type}: rebuild it with 'earlytom build-plugins'"
        )
    _loaded[key] = handle


def rtx_parser_link(trt: Any) -> Path:
    """Where TensorRT-RTX's ONNX parser looks for the unversioned runtime library."""
    import tensorrt_rtx_libs  # the wheel holding libtensorrt_rtx.so.1 and the parser

    del trt
    return Path(tensorrt_rtx_libs.__file__).parent / "libtensorrt_rtx.so"


def ensure_rtx_parser_can_load_plugins(trt: Any, *, create: bool) -> Path:
    """TensorRT-RTX's parser dlopens `libtensorrt_rtx.so` when a graph has a plugin node, but the
    wheel ships only `libtensorrt_rtx.so.1`, and the missing file aborts the process. With `create`
    the symlink is made beside the parser (its RPATH is $ORIGIN); without, a clear error says how."""
    link = rtx_parser_link(trt)
    if link.exists():
        return link
    if create:
        try:
            link.symlink_to("libtensorrt_rtx.so.1")
        except OSError as exc:
            raise InputError(
                f"cannot create {link} ({exc.strerror}): create it as a symlink to libtensorrt_rtx.so.1"
            ) from exc
        return link
    raise InputError(
        f"TensorRT-RTX's ONNX parser needs {link} to parse plugin nodes: run 'earlytom build-plugins' "
        "(it creates the symlink to libtensorrt_rtx.so.1) or create it by hand"
    )
