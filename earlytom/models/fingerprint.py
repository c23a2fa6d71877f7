"""The identity of a checkpoint's vision weights, computed on the CPU from the files themselves.

An exported folder records the fingerprint of the weights it was exported from; the runtime
compares it with the fingerprint of the checkpoint it loaded. Both are computed from the stored
tensors (read from safetensors on the CPU, names normalised to the vision side's, values as
fp32), so the answer does not depend on the device or dtype the model is loaded with, nor on the
checkpoint layout; live (possibly GPU, fp16) tensors are never hashed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch

RANDOM_PREFIX = "random:"


def fingerprint_tensors(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the sorted (name, fp32 little-endian values) of CPU tensors."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def checkpoint_fingerprint(folder: Path) -> str:
    """Fingerprint of the vision tensors (tower, projector, newline) stored in a checkpoint folder."""
    from earlytom.models.vision import read_vision_tensors

    return fingerprint_tensors(read_vision_tensors(Path(folder)))


def random_fingerprint(model: str, what: str) -> str:
    """Random weights have no checkpoint: name how they were made, so two different draws never match."""
    return f"{RANDOM_PREFIX}{model}:{what}:seed0"
