"""EarlyTomPipeline: video + prompt in, answer and an honest TTFT breakdown out.

A thin composition: the vision path (`earlytom.vision_path`, on the backend's executors) and the
language-model driver (`earlytom.models.generation`: prefill with Stage III, decoding).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from earlytom.artifact import Artifact
from earlytom.config import EarlyTomConfig
from earlytom.errors import InputError
from earlytom.models.adapters import adapter_for
from earlytom.models.context import check_context
from earlytom.models.generation import SamplingConfig, find_visual_span, prefill
from earlytom.models.language import InnerMergeConfig
from earlytom.models.loading import LoadedModel, context_length, load_model
from earlytom.models.prompt import embed_prompt
from earlytom.models.video import DecodedVideo, load_video
from earlytom.runtime.backends import artifact_path, resolve_backend, torch_path
from earlytom.runtime.timing import StageTimer, StageTimes
from earlytom.vision_path import VideoTokens, VisionPath


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
    input_ids: torch.Tensor  # (1, L) on the CPU, with one video placeholder per visual token
    inputs_embeds: torch.Tensor  # (1, L, C)
    video: VideoTokens
    positions: torch.Tensor | None = None  # (3, L) M-RoPE positions on the device; None: 0..L-1


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


def check_tensorrt_device(device: str) -> None:
    """The tensorrt backend runs plans on an NVIDIA GPU: one piece of advice that fits both flags."""
    if not torch.cuda.is_available():
        raise InputError(
            "the tensorrt backend runs the plans on an NVIDIA GPU and this torch sees none: use "
            "--backend onnxruntime (or auto) to run the folder's ONNX files on this machine"
        )
    if device != "auto" and not device.startswith("cuda"):
        raise InputError(
            f"the tensorrt backend runs on the GPU, not on device '{device}': pass --device cuda (or auto), "
            "or use --backend onnxruntime"
        )


# Where tokens are dropped: inside the encoder (EarlyTom), or after the stock encoder (baseline).
METHODS = ("earlytom", "post-encoder")


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.float32


class EarlyTomPipeline:
    """A Video-LLM of any registered family whose vision path compresses with EarlyTom (or not,
    `enabled=False`)."""

    def __init__(
        self,
        loaded: LoadedModel,
        config: EarlyTomConfig | None = None,
        *,
        num_frames: int | None = None,
        artifacts: Path | Artifact | None = None,
        backend: str = "auto",
        inner_merge: bool = True,
        method: str = "earlytom",
        tie_band: float | None = None,
    ) -> None:
        """`artifacts`: an earlytom-export folder whose stages run the vision path, with the
        folder's own EarlyTom setting (then `config` must be None). `backend`: torch (modules,
        no folder), onnxruntime or tensorrt (a folder); auto picks torch without a folder and
        onnxruntime with one. `inner_merge`: Stage III in the language model (config.inner_*).
        `method`: earlytom, or post-encoder (the stock encoder, then per-frame top-k by last-layer
        received attention at config.retention; torch backend only) for comparison. `tie_band`:
        Stage I comparisons closer than this resolve as exact ties; None takes the band of the
        vision precision (the folder's, or the model dtype's), 0 is the released rule.
        `num_frames` None: the family's default (LLaVA-OneVision and Qwen2.5-VL 32, LLaVA-Video 64)."""
        num_frames = loaded.family.frames if num_frames is None else num_frames
        if num_frames < 1:
            raise InputError(f"frames={num_frames} is out of range: sample at least 1 frame")
        if method not in METHODS:
            raise InputError(f"unknown method '{method}': choose {', '.join(METHODS)}")
        if method == "post-encoder" and (artifacts is not None or config is None or not config.enabled):
            raise InputError(
                "the post-encoder baseline runs the torch modules and needs an enabled config: "
                "pass config=preset(task, retention) and no engine folder"
            )
        folder = artifacts.folder if isinstance(artifacts, Artifact) else artifacts
        self.backend = resolve_backend(backend, None if folder is None else Path(folder))
        self.method = method
        self.loaded = loaded
        self.adapter = adapter_for(loaded.family)
        self.model = loaded.model
        self.vision_side = self.adapter.vision_side(self.model)  # shares the model's modules
        self.num_frames = num_frames
        self.device = self.model.get_input_embeddings().weight.device
        self.dtype = self.model.get_input_embeddings().weight.dtype
        self.vision: VisionPath
        if artifacts is not None:
            if config is not None:
                raise InputError(
                    "an artifact folder carries its own EarlyTom setting: do not pass a config too"
                )
            artifact = artifacts if isinstance(artifacts, Artifact) else Artifact.read(Path(artifacts))
            config = artifact.manifest.config
            config.check_model(vision_layers=artifact.manifest.geometry.vision_layers,
                               language_layers=self.model.config.text_config.num_hidden_layers)  # fmt: skip
            self.vision = artifact_path(loaded, artifact, backend=self.backend, tie_band=tie_band)
        else:
            config = config or EarlyTomConfig()
            config.check_model(vision_layers=self.vision_side.num_layers,
                               language_layers=self.model.config.text_config.num_hidden_layers)  # fmt: skip
            self.adapter.check_config(config, self.vision_side)
            self.vision = torch_path(loaded, config, method=method, tie_band=tie_band)
        self.config = config
        self.inner = InnerMergeConfig.from_config(config) if inner_merge else None

    @classmethod
    def from_pretrained(
        cls,
        model: str = "tiny",
        *,
        config: EarlyTomConfig | None = None,
        device: str = "auto",
        dtype: torch.dtype | None = None,
        random_weights: bool = False,
        num_frames: int | None = None,
        cache_dir: Path | None = None,
        artifacts: Path | None = None,
        backend: str = "auto",
        inner_merge: bool = True,
        method: str = "earlytom",
        tie_band: float | None = None,
    ) -> EarlyTomPipeline:
        """Load `model` and compose the pipeline; the backend, the device and an artifact folder are
        checked (cheapest first) before the model loads."""
        chosen = resolve_backend(backend, None if artifacts is None else Path(artifacts))
        if chosen == "tensorrt":
            check_tensorrt_device(device)
        artifact = None if artifacts is None else Artifact.read(Path(artifacts))
        target = resolve_device(device)
        loaded = load_model(
            model,
            device=target,
            dtype=dtype or default_dtype(target),
            random_weights=random_weights,
            cache_dir=cache_dir,
        )
        return cls(
            loaded,
            config,
            num_frames=num_frames,
            artifacts=artifact,
            backend=backend,
            inner_merge=inner_merge,
            method=method,
            tie_band=tie_band,
        )

    def load_video(self, video: str | os.PathLike[str] | DecodedVideo) -> DecodedVideo:
        if isinstance(video, DecodedVideo):
            return video
        return load_video(video, self.num_frames, rounding=self.adapter.rounding)

    def prepare(self, video: DecodedVideo, prompt: str, timer: StageTimer | None = None) -> PreparedInputs:
        """Frames -> inputs_embeds (and M-RoPE positions), timing each stage when a timer is given."""
        timer = timer or StageTimer(self.device)
        with timer.stage("other"):
            inputs = self.adapter.vision_inputs(
                video, device=self.device, dtype=self.dtype, vision=self.vision_side
            )
        with timer.stage("vision_encoding"):
            encoded = self.vision.encode(
                inputs.pixels, side=inputs.side, tokens_per_frame=inputs.tokens_per_frame
            )
        with timer.stage("token_processing"):
            tokens = self.vision.tokens(encoded)
            video_id = self.loaded.video_token_id
            built = self.adapter.prompt_inputs(
                self.loaded.tokenizer, prompt, tokens, inputs, video_token_id=video_id
            )  # ids (1, L) on the CPU
            embeds = embed_prompt(self.model, built.input_ids, tokens.embeds, video_token_id=video_id)
            positions = None if built.positions is None else built.positions.to(self.device)
        return PreparedInputs(built.input_ids, embeds, tokens, positions)

    def __call__(
        self,
        video: str | os.PathLike[str] | DecodedVideo,
        prompt: str,
        *,
        max_new_tokens: int = 64,
        sampling: SamplingConfig | None = None,
        stream: Callable[[str], None] | None = None,
    ) -> RunResult:
        """Answer `prompt` about `video`. `sampling` None is greedy; `stream` gets each new piece of text."""
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens={max_new_tokens} is out of range: generate at least 1 token")
        decoded = self.load_video(video)  # decoding is not part of TTFT: it starts from decoded frames
        _, height, width, _ = decoded.frames.shape
        bound = self.adapter.visual_bound(int(decoded.frames.shape[0]), int(height), int(width))
        check_context(
            self.loaded.tokenizer, prompt, frames=bound.frames, config=self.config,
            context=context_length(self.model.config), model=self.loaded.name,
            tokens_per_frame=bound.tokens_per_frame, newline_tokens=bound.newline_tokens,
            text_tokens=self.adapter.text_tokens,
        )  # fmt: skip
        timer = StageTimer(self.device)
        prepared = self.prepare(decoded, prompt, timer)
        span = (
            find_visual_span(prepared.input_ids, self.loaded.video_token_id) if self.inner else None
        )  # host ids
        with timer.stage("llm_prefill"):
            _, generation = prefill(
                self.model, prepared.inputs_embeds, visual_span=span, inner=self.inner, sampling=sampling,
                positions=prepared.positions,
            )  # fmt: skip
        token_ids = self._decode(generation, max_new_tokens, stream)
        text = self._text(token_ids)
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
                "backend": self.backend,
                "tie_band": self.vision.planner.tie_band,
                "method": self.method if self.config.enabled else "stock",
                "inner_merge": None
                if self.inner is None
                else {
                    "layer": self.inner.layer,
                    "ratio": self.inner.ratio,
                    "visual_tokens_dropped": generation.dropped,
                },
                "video": {
                    "path": str(decoded.path),
                    "total_frames": decoded.total_frames,
                    "sampled_indices": list(decoded.indices),
                },
            },
        )

    def _decode(
        self, generation: Any, max_new_tokens: int, stream: Callable[[str], None] | None
    ) -> list[int]:
        """Greedy or sampled continuation until a stop id; `stream` gets the text as it grows."""
        stop_ids = self.loaded.eos_token_ids
        tokens = generation.tokens
        shown = ""
        while True:
            if stream is not None:
                text = self._text(tokens)
                if text.startswith(shown) and len(text) > len(shown):
                    stream(text[len(shown) :])
                    shown = text
            if len(tokens) >= max_new_tokens or tokens[-1] in stop_ids:
                return list(tokens[:max_new_tokens])
            generation.step()

    def _text(self, token_ids: list[int]) -> str:
        vocabulary = len(self.loaded.tokenizer)
        # A random-weight model may emit ids beyond a stand-in tokenizer's vocabulary: show those as-is.
        return str(
            self.loaded.tokenizer.decode([t for t in token_ids if t < vocabulary], skip_special_tokens=True)
        ).strip()
