"""The video path from an earlytom-export folder: ONNX segments in ONNX Runtime + the planner.

The LLM still comes from the Hugging Face model; the folder must have been exported from the
same vision weights (checked by hash) and carries its own EarlyTom setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from earlytom.errors import EngineMismatchError
from earlytom.exporter.chain import ChainRun, OrtExecutor, run_chain
from earlytom.exporter.manifest import artifact_config, read_manifest, segment_specs
from earlytom.models.encoder import planner_for
from earlytom.models.video_path import VideoTokens
from earlytom.models.vision import VisionSide


@dataclass(frozen=True)
class EncodedChain:
    run: ChainRun


class OnnxVideoPath:
    """`encode` runs every segment (ONNX Runtime) with merges; `tokens` unpacks the final outputs."""

    def __init__(self, folder: Path, llava: Any) -> None:
        from earlytom.exporter.export import weights_sha256

        manifest = read_manifest(folder)
        vision = VisionSide.from_llava(llava)
        if manifest["geometry"]["llm_hidden_size"] != vision.image_newline.shape[0]:
            raise EngineMismatchError(
                f"{folder} was exported for a {manifest['geometry']['llm_hidden_size']}-wide LLM, "
                f"this model is {vision.image_newline.shape[0]} wide: use the matching --model"
            )
        if weights_sha256(vision) != manifest["model"]["weights_sha256"]:
            raise EngineMismatchError(
                f"{folder} was exported from other vision weights than {manifest['model']['name']} loaded "
                "here: re-export it from this model"
            )
        self.config = artifact_config(manifest)
        self.pooled_tokens = int(manifest["geometry"]["pooled_tokens_per_frame"])
        self.specs = segment_specs(manifest)
        self.executors = [
            OrtExecutor(Path(folder) / s["file"], spec)
            for s, spec in zip(manifest["segments"], self.specs, strict=True)
        ]
        self.planner = planner_for(self.config)

    def encode(self, pixel_values: torch.Tensor) -> EncodedChain:
        run = run_chain(
            self.executors, self.specs, pixel_values, self.planner, tokens_per_frame=self.pooled_tokens
        )
        return EncodedChain(run)

    def tokens(self, encoded: EncodedChain) -> VideoTokens:
        run = encoded.run
        return VideoTokens(
            embeds=run.video_tokens,
            frame_ids=run.token_index[:, 0],
            positions=run.token_index[:, 1],
            frames_per_stage=run.frames_per_stage,
            tokens_before=run.frames_per_stage[0] * self.pooled_tokens + 1,
        )
