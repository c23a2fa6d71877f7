"""TTFT benchmark: the stock model against EarlyTom at several retentions, one model load, warm runs.

Optionally each retention also runs the post-encoder baseline (the stock encoder, then per-frame
top-k by last-layer received attention; `earlytom.vision_path.planners.PostEncoderPlanner`) with the same
language-model side, to show what dropping tokens inside the encoder buys.

Every setting runs on the same loaded weights, device, dtype and decoded frames. Each setting gets
`warmup` untimed calls (a cold first call pays allocator growth and kernel selection), then `runs`
timed calls of `pipeline(frames, prompt, max_new_tokens=1)`; TTFT and its stages are the
pipeline's own synchronised timers. Speed-up is the baseline's TTFT p50 over the setting's, both
measured in this one run. FLOPs come from the frames per stage and visual tokens the runs
measured, in both conventions of `earlytom.compression.flops`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from earlytom.compression.flops import CONVENTIONS, ArchitectureShape, prefill_flops
from earlytom.config import EarlyTomConfig, preset
from earlytom.errors import InputError
from earlytom.runtime.environment import device_name, device_slug, versions
from earlytom.runtime.timing import STAGES

if TYPE_CHECKING:
    from earlytom.models.loading import LoadedModel
    from earlytom.models.video import DecodedVideo

BACKENDS = ("auto", "torch")  # auto is torch here: exported folders are not benchmarked yet
DEFAULT_PROMPT = "Describe the video."
TOTAL = "total"
FLOPS_UNIT = "FLOPs, 1 multiply-add = 1 (as in the paper)"


@dataclass(frozen=True)
class SettingResult:
    """One setting (the stock baseline, EarlyTom or the post-encoder baseline at one retention),
    `runs` warm timed calls."""

    label: str  # "baseline", "10%" (EarlyTom) or "post 10%" (post-encoder)
    config: EarlyTomConfig
    method: str  # "stock", "earlytom" or "post-encoder"
    runs_ms: dict[str, tuple[float, ...]]  # stage (and "total") -> one value per timed run
    speedup: float  # baseline TTFT p50 / this TTFT p50
    visual_tokens_before: int  # B·P + 1
    visual_tokens: int  # N + 1 given to the LLM (newline included)
    frames_per_stage: tuple[int, ...]
    inner_layer: int | None  # Stage III as counted in the FLOPs: decoder layer K, None when off
    inner_ratio: float  # fraction of the visual tokens Stage III drops (0 when off)
    inner_merge_source: str  # where the Stage III setting comes from
    flops: dict[str, dict[str, Any]] = field(default_factory=dict)  # convention -> breakdown

    @property
    def retention(self) -> float | None:
        return self.config.retention if self.config.enabled else None

    def p50(self, stage: str = TOTAL) -> float:
        return percentile(self.runs_ms[stage], 50)

    def p90(self, stage: str = TOTAL) -> float:
        return percentile(self.runs_ms[stage], 90)

    def to_dict(self) -> dict[str, Any]:
        stages = (*STAGES, TOTAL)
        inner = {"counted": self.inner_layer is not None, "layer": self.inner_layer,
                 "ratio": self.inner_ratio, "source": self.inner_merge_source}  # fmt: skip
        return {
            "label": self.label,
            "method": self.method,
            "retention": self.retention,
            "config": self.config.to_dict(),
            "ttft_ms": {
                "p50": {s: round(self.p50(s), 3) for s in stages},
                "p90": {s: round(self.p90(s), 3) for s in stages},
                "runs": {s: [round(v, 3) for v in self.runs_ms[s]] for s in stages},
            },
            "speedup": self.speedup,
            "visual_tokens_before": self.visual_tokens_before,
            "visual_tokens": self.visual_tokens,
            "frames_per_stage": list(self.frames_per_stage),
            "inner_merge": inner,
            "flops": self.flops,
        }


@dataclass(frozen=True)
class BenchReport:
    model: str
    random_weights: bool
    device: str  # torch device, e.g. "cpu" or "cuda:0"
    device_name: str  # GPU name, or CPU model and core count
    device_slug: str  # file-name form: "h100-80gb-hbm3", "cpu-2core"
    dtype: str
    backend: str
    task: str
    frames: int
    runs: int
    warmup: int
    prompt: str
    prompt_tokens: int  # text tokens of the chat-formatted prompt around the video
    video: dict[str, Any]
    command: str
    date: str  # ISO 8601, local time with offset
    versions: dict[str, str]
    baseline: SettingResult
    settings: tuple[SettingResult, ...]  # EarlyTom, one per retention
    post_encoder: tuple[SettingResult, ...] = ()  # the post-encoder baseline, one per retention (or none)

    def rows(self) -> tuple[SettingResult, ...]:
        """Baseline, then per retention EarlyTom and (when run) the post-encoder baseline."""
        post = {row.retention: row for row in self.post_encoder}
        paired = [(row, post[row.retention]) if row.retention in post else (row,) for row in self.settings]
        return (self.baseline, *(row for pair in paired for row in pair))

    def to_dict(self) -> dict[str, Any]:
        plain = ("model", "random_weights", "frames", "dtype", "backend", "runs", "warmup", "prompt",
                 "prompt_tokens", "video")  # fmt: skip
        return {
            "date": self.date,
            "command": self.command,
            "device": {"name": self.device_name, "torch_device": self.device, "slug": self.device_slug},
            "versions": self.versions,
            "preset": self.task,
            **{name: getattr(self, name) for name in plain},
            "timing": "ms from decoded frames to the first generated token; p50/p90 over the timed runs",
            "flops_unit": FLOPS_UNIT,
            "baseline": self.baseline.to_dict(),
            "earlytom": [s.to_dict() for s in self.settings],
            "post_encoder": [s.to_dict() for s in self.post_encoder],
        }


def run_bench(
    model: str, video: str | os.PathLike[str] | DecodedVideo, retentions: Sequence[float], *,
    task: str | None = None, backend: str = "torch", device: str = "auto", dtype: torch.dtype | None = None,
    random_weights: bool = False, num_frames: int | None = None, runs: int = 5, warmup: int = 1,
    prompt: str = DEFAULT_PROMPT, cache_dir: Path | None = None, artifacts: Path | None = None,
    command: str = "", progress: Callable[[str], None] | None = None, post_encoder: bool = False,
    loaded: LoadedModel | None = None, allow_partial: bool = False,
) -> BenchReport:  # fmt: skip
    """Baseline (stock model, all tokens), then EarlyTom at `preset(task, r)` of the model's family
    per retention (and the post-encoder baseline with `post_encoder`). `loaded`: a model already
    loaded as `model`, so nothing is loaded. `video`: a file, or frames already decoded with
    `num_frames` frames (`allow_partial`: a truncated file is sampled from the frames that decode).
    task / num_frames None: the family's default preset / frame count."""
    from earlytom.config import DEFAULT_TASKS
    from earlytom.models.adapters import adapter_for
    from earlytom.models.flops_shapes import shape_from_config
    from earlytom.models.loading import load_model
    from earlytom.models.registry import family_of
    from earlytom.runtime.pipeline import EarlyTomPipeline, default_dtype, resolve_device

    say = progress or (lambda _message: None)
    family = loaded.family if loaded is not None else family_of(model)
    task = task or DEFAULT_TASKS[family.name]
    num_frames = family.frames if num_frames is None else num_frames
    configs = check_bench_inputs(retentions, task=task, backend=backend, frames=num_frames, runs=runs,
                                 warmup=warmup, family=family.name)  # fmt: skip
    _check_request(model, prompt, artifacts=artifacts, loaded=loaded, frames=num_frames,
                   random_weights=random_weights, cache_dir=cache_dir)  # fmt: skip
    decoded = _decoded(video, num_frames, say, allow_partial, adapter_for(family).rounding)
    if loaded is None:
        target = resolve_device(device)
        say(f"loading {model}{' (random weights)' if random_weights else ''} ...")
        loaded = load_model(model, device=target, dtype=dtype or default_dtype(target),
                            random_weights=random_weights, cache_dir=cache_dir)  # fmt: skip
    target = loaded.model.get_input_embeddings().weight.device
    shape = shape_from_config(loaded.model.config)
    prompt_tokens = _prompt_tokens(loaded, prompt)

    model_in_use = loaded

    def measure(label: str, config: EarlyTomConfig, method: str = "earlytom") -> list[Any]:
        pipeline = EarlyTomPipeline(model_in_use, config, num_frames=num_frames, method=method)
        return time_runs(pipeline, decoded, prompt, label=label, warmup=warmup, runs=runs, say=say)

    stock = EarlyTomConfig(enabled=False)
    base_results = measure("baseline", stock)
    base_p50 = percentile([r.ttft_ms.total for r in base_results], 50)
    summary = partial(summarise, shape=shape, prompt_tokens=prompt_tokens, baseline_p50=base_p50)
    baseline = summary("baseline", stock, base_results, method="stock")
    settings, post = [], []
    for config in configs:
        label = label_of(config.retention)
        settings.append(summary(label, config, measure(label, config)))
        if post_encoder:
            label = f"post {label}"
            post.append(summary(label, config, measure(label, config, "post-encoder"), method="post-encoder"))
    first = base_results[0]
    return BenchReport(
        model=model, random_weights=random_weights, device=str(target), device_name=device_name(target),
        device_slug=device_slug(target), dtype=str(loaded.model.dtype).removeprefix("torch."),
        backend=backend, task=task,
        frames=num_frames, runs=runs, warmup=warmup, prompt=prompt, prompt_tokens=prompt_tokens,
        video=first.extra.get("video", {"path": str(video)}), command=command,
        date=datetime.now().astimezone().isoformat(timespec="seconds"), versions=versions(),
        baseline=baseline, settings=tuple(settings), post_encoder=tuple(post),
    )  # fmt: skip


def _prompt_tokens(loaded: LoadedModel, prompt: str) -> int:
    """Text tokens of the prompt (the family's chat template around no video token)."""
    from earlytom.models.adapters import adapter_for

    return adapter_for(loaded.family).text_tokens(loaded.tokenizer, prompt)


def _check_request(
    model: str, prompt: str, *, artifacts: Path | None, loaded: LoadedModel | None, frames: int,
    random_weights: bool, cache_dir: Path | None,
) -> None:  # fmt: skip
    """What fails before any decoding or model load: the folder, the prompt, the context."""
    from earlytom.models.context import check_request
    from earlytom.models.prompt import check_prompt

    if artifacts is not None:
        raise InputError("bench does not run exported artifacts yet: leave out --artifacts")
    check_prompt(prompt)
    if loaded is None:  # the stock baseline has the most visual tokens
        check_request(model, prompt, frames=frames, config=None, random_weights=random_weights,
                      cache_dir=cache_dir)  # fmt: skip


def _decoded(
    video: str | os.PathLike[str] | DecodedVideo, num_frames: int, say: Callable[[str], None],
    allow_partial: bool = False, rounding: str = "floor",
) -> DecodedVideo:  # fmt: skip
    """The frames every setting runs on: decoded here (before any model load) or given decoded."""
    from earlytom.models.video import DecodedVideo, load_video_reporting

    if not isinstance(video, DecodedVideo):
        say(f"decoding {video} ...")  # before the model load, which can take a minute
        return load_video_reporting(video, num_frames, say, allow_partial=allow_partial, rounding=rounding)
    if video.frames.shape[0] != num_frames:
        raise InputError(f"the decoded video has {video.frames.shape[0]} frames, not num_frames="
                         f"{num_frames}: decode it with {num_frames} frames")  # fmt: skip
    return video


def time_runs(pipeline: Any, video: DecodedVideo, prompt: str, *, label: str, warmup: int, runs: int,
              say: Callable[[str], None]) -> list[Any]:  # fmt: skip
    """`warmup` untimed calls, then `runs` timed ones (each to the first token)."""
    for i in range(warmup):
        say(f"{label}: warm-up {i + 1}/{warmup} ...")
        pipeline(video, prompt, max_new_tokens=1)
    results = []
    for i in range(runs):
        say(f"{label}: run {i + 1}/{runs} ...")
        results.append(pipeline(video, prompt, max_new_tokens=1))
    return results


def check_bench_inputs(
    retentions: Sequence[float],
    *,
    task: str | None,
    backend: str,
    frames: int,
    runs: int,
    warmup: int,
    family: str = "llava-onevision",
) -> list[EarlyTomConfig]:
    """Every check that needs no model: the EarlyTom config of each retention, in order."""
    if backend not in BACKENDS:
        raise InputError(f"backend '{backend}' cannot be benchmarked yet: use torch (or auto)")
    if not isinstance(runs, int) or runs < 1:
        raise InputError(f"runs={runs} is out of range: time at least 1 run")
    if not isinstance(warmup, int) or warmup < 1:
        raise InputError(
            f"warmup={warmup} is out of range: at least 1 untimed run (a cold start is not TTFT)"
        )
    if not isinstance(frames, int) or frames < 1:
        raise InputError(f"frames={frames} is out of range: sample at least 1 frame")
    if not retentions:
        raise InputError("no retention given: pass at least one, e.g. 0.1,0.15,0.2,0.25")
    configs = [preset(task, r, family=family) for r in retentions]  # ConfigError: out of range or not in it
    labels = [label_of(c.retention) for c in configs]
    if len(set(labels)) != len(labels):
        raise InputError(f"retentions {list(retentions)} repeat a value: give each once")
    return configs


def summarise(
    label: str, config: EarlyTomConfig, results: Sequence[Any], *, shape: ArchitectureShape,
    prompt_tokens: int, baseline_p50: float, method: str = "earlytom",
) -> SettingResult:  # fmt: skip
    """RunResults of one setting -> SettingResult, FLOPs from the frames and tokens they measured."""
    runs_ms = {s: tuple(float(getattr(r.ttft_ms, s)) for r in results) for s in STAGES}
    runs_ms[TOTAL] = tuple(float(r.ttft_ms.total) for r in results)
    last = results[-1]  # the algorithm is deterministic on fixed frames: every run agrees
    frames, tokens = tuple(int(t) for t in last.frames_per_stage), int(last.visual_tokens_after)
    layer, ratio, source = inner_merge_of(last.extra, config)
    # The post-encoder baseline merges no frame: its encoder costs what the stock one does.
    layers = config.prune_layers if config.enabled and method == "earlytom" else ()
    flops: dict[str, dict[str, Any]] = {
        c: prefill_flops(shape, frames_per_stage=frames, prune_layers=layers, visual_tokens=tokens,
                         prompt_tokens=prompt_tokens, inner_layer=layer, inner_ratio=ratio,
                         convention=c).to_dict()
        for c in CONVENTIONS
    }  # fmt: skip
    return SettingResult(
        label=label, config=config, method=method, runs_ms=runs_ms,
        speedup=baseline_p50 / percentile(runs_ms[TOTAL], 50),
        visual_tokens_before=int(last.visual_tokens_before), visual_tokens=tokens, frames_per_stage=frames,
        inner_layer=layer, inner_ratio=ratio, inner_merge_source=source, flops=flops,
    )  # fmt: skip


def inner_merge_of(extra: dict[str, Any], config: EarlyTomConfig) -> tuple[int | None, float, str]:
    """(decoder layer K or None, ratio dropped, where that comes from) of Stage III in one run, as
    the pipeline reports it in RunResult.extra["inner_merge"] (None: not applied). A pipeline that
    does not report it is assumed not to apply it."""
    if not config.enabled or config.inner_ratio == 0:
        return None, 0.0, "off in the config"
    if "inner_merge" not in extra:
        return None, 0.0, "assumed off: the pipeline does not report RunResult.extra['inner_merge']"
    value = extra["inner_merge"]
    if isinstance(value, dict):
        dropped = value.get("visual_tokens_dropped", value.get("dropped"))
        if dropped == 0:
            return None, 0.0, "reported by the pipeline (no visual token dropped)"
        return (int(value.get("layer", config.inner_layer)), float(value.get("ratio", config.inner_ratio)),
                "reported by the pipeline")  # fmt: skip
    if value:
        return config.inner_layer, config.inner_ratio, "reported by the pipeline"
    return None, 0.0, "reported off by the pipeline"


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); q in [0, 100]."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def label_of(retention: float) -> str:
    return f"{retention * 100:g}%"
