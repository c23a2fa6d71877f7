"""`earlytom build-plugins`: compile the TokenSelect TensorRT plugin libraries."""

from __future__ import annotations

from pathlib import Path

import click

from earlytom.cli.common import Command, friendly_errors, progress


@click.command("build-plugins", cls=Command)
@click.option(
    "--out", type=click.Path(path_type=Path),
    help="Folder for the libraries.  [default: ~/.cache/earlytom/plugins, where export looks]",
)  # fmt: skip
@click.option(
    "--tensorrt-include", type=click.Path(path_type=Path),
    help="Folder with NvInferRuntime.h.  [default: $TENSORRT_ROOT/include, system folders, kernel-lens]",
)  # fmt: skip
@click.option("--nvcc", type=click.Path(path_type=Path), help="nvcc to use.  [default: the one on PATH]")
@click.option(
    "--arch", "architectures", default="80-real,86-real,89-real,90-real,120", show_default=True,
    help="CUDA architectures (CMake syntax); a bare number also embeds PTX for newer GPUs.",
)  # fmt: skip
@friendly_errors
def build_plugins(
    out: Path | None, tensorrt_include: Path | None, nvcc: Path | None, architectures: str
) -> None:
    """Build libearlytom_plugins.so (getCreators: TensorRT and TensorRT-RTX load_library, trtexec
    --dynamicPlugins) and libearlytom_plugins_static.so (self-registering: full TensorRT's trtexec
    --staticPlugins). With TensorRT-RTX installed, also make its ONNX parser able to load plugins."""
    from earlytom.trt_plugins.library import build_plugin_libraries

    built = build_plugin_libraries(
        out,
        tensorrt_include=tensorrt_include,
        nvcc=nvcc,
        architectures=tuple(a.strip() for a in architectures.split(",") if a.strip()),
        progress=progress,
    )
    _prepare_tensorrt_rtx()
    click.echo(f"built {built.library}")
    click.echo(f"built {built.static_library}")


def _prepare_tensorrt_rtx() -> None:
    try:
        import tensorrt_rtx
    except ImportError:
        return
    from earlytom.trt_plugins.registry import ensure_rtx_parser_can_load_plugins, rtx_parser_link

    existed = rtx_parser_link(tensorrt_rtx).exists()
    link = ensure_rtx_parser_can_load_plugins(tensorrt_rtx, create=True)
    if not existed:
        progress(f"created {link} -> libtensorrt_rtx.so.1 (TensorRT-RTX's parser loads it for plugin nodes)")
