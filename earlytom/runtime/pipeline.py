"""EarlyTomPipeline: video + prompt in, answer and an honest TTFT breakdown out (torch or ONNX segments)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from earlytom.config import EarlyTomConfig
from earlytom.errors import InputError
from earlytom.models.preprocess import preprocess_frames
from earlytom.models.prompt import build_input_ids
from earlytom.models.registry import LoadedModel, load_model
from earlytom.models.video import DecodedVideo, load_video
from earlytom.models.video_path import VideoPath, VideoTokens, embed_prompt
from earlytom.models.vision import VisionSide
from earlytom.runtime.generation import decode_greedy, prefill
from earlytom.runtime.onnx_path import OnnxVideoPath
from earlytom.runtime.timing import StageTimer, StageTimes


@dataclass(frozen=True)
class RunResult:
    text: str
    token_ids: list[int]
    frames_per_stage: list[int]  # input frames, then frames after each prune layer
    visual_tokens_before: int  # stock: B·P + 1 (newline included)
    visual_tokens_after: int  # N + 1 (newline included)
    ttft_ms: StageTimes
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "token_ids": self.token_ids,
            "frames_per_stage": self.frames_per_stage,
            "visual_tokens_before": self.visual_tokens_before,
            "visual_tokens_after": self.visual_tokens_after,
            "ttft_ms": self.ttft_ms.to_dict(),
            **self.extra,
        }


@dataclass(frozen=True)
class PreparedInputs:
    input_ids: torch.Tensor  # (1, L) with N+1 video placeholders
    inputs_embeds: torch.Tensor  # (1, L, C)
    video: VideoTokens


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"unknown device '{name}': use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device '{name}' requested but this torch has no usable CUDA device: use --device cpu"
        )
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"device '{name}' is not supported: use auto, cpu, cuda or cuda:N")
    return device


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.float32


class EarlyTomPipeline:
    """A LLaVA-OneVision model whose vision path compresses with EarlyTom (or not, `enabled=False`)."""

    def __init__(
        self,
        loaded: LoadedModel,
        config: EarlyTomConfig | None = None,
        *,
        num_frames: int = 32,
        artifacts: Path | None = None,
    ) -> None:
        """`artifacts`: an earlytom-export folder whose ONNX segments run the vision path in ONNX
        Runtime, with the folder's own EarlyTom setting (then `config` must be None)."""
        if num_frames < 1:
            raise InputError(f"frames={num_frames} is out of range: sample at least 1 frame")
        self.loaded = loaded
        self.model = loaded.model
        self.num_frames = num_frames
        self.device = self.model.get_input_embeddings().weight.device
        self.dtype = self.model.get_input_embeddings().weight.dtype
        self.video_path: VideoPath | OnnxVideoPath
        if artifacts is not None:
            if config is not None:
                raise InputError(
                    "an artifact folder carries its own EarlyTom setting: do not pass a config too"
                )
            self.video_path = OnnxVideoPath(artifacts, self.model.model)
            config = self.video_path.config
        config = config or EarlyTomConfig()
        self.config = config
        if artifacts is None:
            self.video_path = VideoPath(self.model.model, config)
        config.check_model(
            vision_layers=VisionSide.from_llava(self.model.model).num_layers,
            language_layers=self.model.config.text_config.num_hidden_layers,
        )

    @classmethod
    def from_pretrained(
        cls,
        model: str = "tiny",
        *,
        config: EarlyTomConfig | None = None,
        device: str = "auto",
        dtype: torch.dtype | None = None,
        random_weights: bool = False,
        num_frames: int = 32,
        cache_dir: Path | None = None,
        artifacts: Path | None = None,
    ) -> EarlyTomPipeline:
        target = resolve_device(device)
        loaded = load_model(
            model,
            device=target,
            dtype=dtype or default_dtype(target),
            random_weights=random_weights,
            cache_dir=cache_dir,
        )
        return cls(loaded, config, num_frames=num_frames, artifacts=artifacts)

    def load_video(self, video: str | os.PathLike[str] | DecodedVideo) -> DecodedVideo:
        return video if isinstance(video, DecodedVideo) else load_video(video, self.num_frames)

    def prepare(self, video: DecodedVideo, prompt: str, timer: StageTimer | None = None) -> PreparedInputs:
        """Frames -> inputs_embeds, timing each stage when a timer is given."""
        timer = timer or StageTimer(self.device)
        with timer.stage("other"):
            pixel_values = preprocess_frames(video.frames, device=self.device, dtype=self.dtype)
        with timer.stage("vision_encoding"):
            encoded: Any = self.video_path.encode(pixel_values)  # EncodedVideo or EncodedChain
        with timer.stage("token_processing"):
            tokens = self.video_path.tokens(encoded)
            input_ids = build_input_ids(
                self.loaded.tokenizer,
                prompt,
                num_video_tokens=tokens.embeds.shape[0],
                video_token_id=self.loaded.video_token_id,
            ).to(self.device)
            embeds = embed_prompt(
                self.model,
                input_ids,
                tokens.embeds.to(self.device),
                video_token_id=self.loaded.video_token_id,
            )
        return PreparedInputs(input_ids, embeds, tokens)

    def __call__(
        self, video: str | os.PathLike[str] | DecodedVideo, prompt: str, *, max_new_tokens: int = 64
    ) -> RunResult:
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens={max_new_tokens} is out of range: generate at least 1 token")
        decoded = self.load_video(video)  # decoding is not part of TTFT: it starts from decoded frames
        timer = StageTimer(self.device)
        prepared = self.prepare(decoded, prompt, timer)
        with timer.stage("llm_prefill"):
            first, cache = prefill(self.model, prepared.inputs_embeds)
        token_ids = decode_greedy(
            self.model, first, cache, max_new_tokens=max_new_tokens, stop_ids=self.loaded.eos_token_ids
        )
        vocabulary = len(self.loaded.tokenizer)
        # A random-weight model may emit ids beyond a stand-in tokenizer's vocabulary: show those as-is.
        text = self.loaded.tokenizer.decode(
            [t for t in token_ids if t < vocabulary], skip_special_tokens=True
        )
        return RunResult(
            text=text.strip(),
            token_ids=token_ids,
            frames_per_stage=list(prepared.video.frames_per_stage),
            visual_tokens_before=prepared.video.tokens_before,
            visual_tokens_after=prepared.video.embeds.shape[0],
            ttft_ms=timer.result(),
            extra={
                "model": self.loaded.name,
                "device": str(self.device),
                "dtype": str(self.dtype).removeprefix("torch."),
                "config": self.config.to_dict(),
                "backend": "onnxruntime" if isinstance(self.video_path, OnnxVideoPath) else "torch",
                "video": {
                    "path": str(decoded.path),
                    "total_frames": decoded.total_frames,
                    "sampled_indices": list(decoded.indices),
                },
            },
        )
