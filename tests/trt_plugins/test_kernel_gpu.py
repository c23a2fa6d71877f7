"""The fused TokenSelect CUDA kernel on a GPU against the torch reference (identical indices, equal rows).

The kernel library comes from `earlytom build-plugins` (built here when nvcc is present, else the
one in the default plugin folder, e.g. built on another machine for this GPU's architecture).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
import torch

from earlytom.ops import token_select

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)

from test_trt_plugin import random_case  # noqa: E402 (after the skip: CPU-only runs never import it twice)


def kernel_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from earlytom.errors import InputError
    from earlytom.trt_plugins.library import KERNELS, build_plugin_libraries, default_plugin_dir

    major, minor = torch.cuda.get_device_capability()
    try:
        built = build_plugin_libraries(
            tmp_path_factory.mktemp("kernels"), architectures=(f"{major}{minor}-real",)
        )
        return built.folder / KERNELS
    except InputError:
        prebuilt = default_plugin_dir() / KERNELS
        if not prebuilt.is_file():
            pytest.skip(f"no nvcc here and no prebuilt {prebuilt}: run 'earlytom build-plugins' for this GPU")
        return prebuilt


@pytest.fixture(scope="module")
def kernels(tmp_path_factory) -> ctypes.CDLL:
    library = ctypes.CDLL(str(kernel_library(tmp_path_factory)))
    library.earlytomTokenSelect.restype = ctypes.c_int
    return library


def launch(kernels: ctypes.CDLL, features, scores, kinds, budget, count: int):
    tokens = torch.empty(count, features.shape[2], dtype=features.dtype, device="cuda")
    index = torch.empty(count, 2, dtype=torch.int64, device="cuda")
    status = kernels.earlytomTokenSelect(
        ctypes.c_void_p(features.data_ptr()), ctypes.c_void_p(scores.data_ptr()),
        ctypes.c_void_p(kinds.data_ptr()), ctypes.c_void_p(budget.data_ptr()),
        ctypes.c_int64(features.shape[0]), ctypes.c_int64(features.shape[1]),
        ctypes.c_int64(features.shape[2] * features.element_size()), ctypes.c_int64(count),
        ctypes.c_void_p(tokens.data_ptr()), ctypes.c_void_p(index.data_ptr()),
        ctypes.c_void_p(torch.cuda.current_stream().cuda_stream),
    )  # fmt: skip
    assert status == 0, f"CUDA error {status}"
    torch.cuda.synchronize()
    return tokens, index


@pytest.mark.parametrize("seed", range(60))
def test_kernel_equals_the_reference(kernels, seed: int) -> None:
    features, scores, kinds, budget, slots = (t.cuda() for t in random_case(seed))
    tokens, index = launch(kernels, features, scores, kinds, budget, slots.shape[0])
    expected_tokens, expected_index = token_select(features, scores, kinds, budget, slots)
    assert torch.equal(index, expected_index)
    assert torch.equal(tokens, expected_tokens)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_kernel_at_the_7b_shape(kernels, dtype) -> None:
    from earlytom.compression import frame_kinds, selected_count, token_budget

    generator = torch.Generator().manual_seed(1)
    frames, groups = 12, [(0, 3), (4, 4), (5, 11)]
    features = torch.randn(frames, 196, 3584, generator=generator).to(dtype).cuda()
    scores = torch.rand(frames, 196, generator=generator).cuda()
    budget = token_budget(196, frames, retention=0.1, base_frames=32)
    kinds = frame_kinds(groups, frames)
    slots = torch.arange(selected_count(kinds, budget), device="cuda")
    args = (
        features,
        scores,
        torch.tensor(kinds, device="cuda"),
        torch.tensor([budget.dynamic, budget.static], device="cuda"),
    )
    tokens, index = launch(kernels, *args, slots.shape[0])
    expected_tokens, expected_index = token_select(*args, slots)
    assert torch.equal(index, expected_index) and torch.equal(tokens, expected_tokens)
