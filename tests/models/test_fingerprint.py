"""The checkpoint fingerprint: from the files on the CPU, whatever device and dtype the model loads with."""

from __future__ import annotations

from pathlib import Path

import torch

from earlytom.artifact import Artifact
from earlytom.models.fingerprint import checkpoint_fingerprint, fingerprint_tensors, random_fingerprint
from earlytom.models.loading import LoadedModel, load_model
from earlytom.models.tiny import tiny_path
from earlytom.models.vision import VisionSide, load_vision_side


def test_fingerprint_ignores_the_load_dtype_and_device(tiny_cache: Path, tiny_loaded) -> None:
    half = load_model("tiny", device=torch.device("cpu"), dtype=torch.float16, cache_dir=tiny_cache)
    assert half.model.get_input_embeddings().weight.dtype == torch.float16
    # The meta device holds no values at all: a fingerprint that read live tensors could not be made.
    half.model.to("meta")
    assert half.fingerprint == tiny_loaded.fingerprint == checkpoint_fingerprint(tiny_path(tiny_cache))


def test_export_and_runtime_fingerprints_agree(tiny_cache: Path, tiny_loaded, fp32_dir: Path) -> None:
    loaded = load_vision_side("tiny", cache_dir=tiny_cache)
    assert loaded.fingerprint == tiny_loaded.fingerprint == Artifact.read(fp32_dir).manifest.model.fingerprint


def test_fingerprint_sees_a_changed_weight(tiny_loaded) -> None:
    state = {k: v.clone() for k, v in VisionSide.from_llava(tiny_loaded.model.model).state_dict().items()}
    before = fingerprint_tensors(state)
    name = next(iter(state))
    state[name].view(-1)[0] += 1e-3
    assert fingerprint_tensors(state) != before


def test_random_weights_never_pass_for_a_checkpoint(tiny_cache: Path) -> None:
    drawn = LoadedModel("llava-ov-0.5b", None, None, "random weights", random_label=random_fingerprint(
        "llava-ov-0.5b", "model on cpu"))  # fmt: skip
    exported = random_fingerprint("llava-ov-0.5b", "vision side")  # what earlytom-export records
    assert drawn.fingerprint.startswith("random:") and drawn.fingerprint != exported
    assert exported != checkpoint_fingerprint(tiny_path(tiny_cache))
