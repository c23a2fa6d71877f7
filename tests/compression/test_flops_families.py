"""Prefill FLOPs of LLaVA-Video-7B and Qwen2.5-VL-7B beside the paper's numbers, and the `flops` command.

Paper (DESIGN §10): LLaVA-Video-7B 246.2 T -> 86.4 T at 15 % (64 frames); Qwen2.5-VL-7B 554.7 T ->
67.7 T at 15 % (32 frames, max_pixels = 200704). What reproduces them, and what does not, is pinned
here; docs_flops_tables.md (README) states the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from earlytom.cli.flops import flops
from earlytom.compression.flops import (
    ArchitectureShape,
    baseline_flops,
    flops_report,
    inner_kept,
    prefill_flops,
)
from earlytom.config import preset
from earlytom.errors import ConfigError, InputError, ModelError
from earlytom.models.architectures import architecture_config
from earlytom.models.flops_shapes import (
    architecture_shape,
    default_frames,
    flops_presets,
    qwen_grid,
    shape_from_config,
)

TERA = 1e12
D, M = 1280, 3420  # Qwen2.5-VL-7B's ViT width and MLP width
d, f = 3584, 18944  # its LLM (Qwen2-7B-like)


def dense(n: int, w: int, u: int) -> int:
    """FastV's per-layer count (the paper's convention): 4·n·w² + 2·n²·w + 2·n·w·u."""
    return 4 * n * w * w + 2 * n * n * w + 2 * n * w * u


@pytest.fixture(scope="module")
def video() -> ArchitectureShape:
    return architecture_shape("llava-video-7b")


@pytest.fixture(scope="module")
def qwen() -> ArchitectureShape:
    return architecture_shape("qwen2.5-vl-7b")


def total(shape: ArchitectureShape, frames: int, **kwargs: object) -> float:
    return baseline_flops(shape, frames=frames, **kwargs).total / TERA  # type: ignore[arg-type]


# --- LLaVA-Video-7B ---------------------------------------------------------------------------------


def test_llava_video_pools_from_the_config_mode(video: ArchitectureShape) -> None:
    assert (video.tokens_per_frame, video.pooled_tokens_per_frame, video.newline_tokens) == (729, 169, 1)
    assert default_frames("llava-video-7b") == 64 and default_frames("llava-ov-7b") == 32
    config = architecture_config("llava-ov-7b")
    assert shape_from_config(config).pooled_tokens_per_frame == 196  # no mode: bilinear, as LLaVA-OV
    config.mm_spatial_pool_mode = "bilinear"
    assert shape_from_config(config) == replace(video, pooled_tokens_per_frame=196)
    config.mm_spatial_pool_mode = "max"
    with pytest.raises(ModelError, match="mm_spatial_pool_mode='max'"):
        shape_from_config(config)


def test_llava_video_paper_baseline_counts_196_tokens_per_frame(video: ArchitectureShape) -> None:
    """The paper's 246.2 T is 196 tokens/frame (bilinear pooling); the checkpoint's average pooling
    gives 169 and 229.04 T. The vision side (148.87 T, 64·729 joint tokens) is the same."""
    bilinear = replace(video, pooled_tokens_per_frame=196)
    assert round(total(bilinear, 64), 3) == 246.198
    assert round(total(video, 64), 2) == 229.04
    for shape, tokens in ((bilinear, 64 * 196 + 1), (video, 64 * 169 + 1)):
        base = baseline_flops(shape, frames=64)
        assert round(base.vision / TERA, 2) == 148.87
        assert base.llm == 28 * dense(tokens, d, f)


@pytest.mark.parametrize(("pooled", "fewest"), [(196, 92.82), (169, 91.59)])
def test_llava_video_86_4_is_below_the_videomme_floor(
    video: ArchitectureShape, pooled: int, fewest: float
) -> None:
    """At 15 % the videomme row's prune layers 8,21,23 leave at least 84.20 T of vision even when
    every merge fires (64→39→24→15), so the estimate never reaches the paper's 86.4 T."""
    shape = replace(video, pooled_tokens_per_frame=pooled)
    report = flops_report(shape, frames=64, config=preset("videomme", 0.15))
    most, none = report.earlytom
    assert most.frames_per_stage == (64, 39, 24, 15) and round(most.flops.vision / TERA, 2) == 84.20
    assert round(most.flops.total / TERA, 2) == fewest and round(none.flops.total / TERA, 2) > 150
    assert most.flops.total / TERA > 86.4


def test_llava_video_86_4_is_reached_with_mvbench_layers(video: ArchitectureShape) -> None:
    """Prune layers 6,14,20 (the mvbench row) reach 86.4 T with 196 tokens/frame, e.g. 64→45→32→22."""
    shape = replace(video, pooled_tokens_per_frame=196)
    report = flops_report(shape, frames=64, config=preset("mvbench", 0.15), frames_per_stage=(64, 45, 32, 22))
    (run,) = report.earlytom
    assert round(run.flops.total / TERA, 1) == 86.4
    fewest = flops_report(shape, frames=64, config=preset("mvbench", 0.15)).earlytom[0]
    assert round(fewest.flops.total / TERA, 2) == 75.10


def test_llava_video_presets_follow_design_10() -> None:
    table = flops_presets("llava-video-7b")
    assert table["videomme"][0.15] == (0.4, (8, 21, 23)) and table["videomme"][0.25] == (0.6, (10, 21, 23))
    assert table["longvideobench"][0.25] == (0.8, (6, 21, 23))
    assert flops_presets("llava-ov-7b")["videomme"][0.25] == (0.7, (10, 21, 23))


# --- Qwen2.5-VL-7B: shape ---------------------------------------------------------------------------


def test_qwen_shape_from_its_config(qwen: ArchitectureShape) -> None:
    vision = (qwen.vision_layers, qwen.vision_hidden, qwen.vision_mlp, qwen.vision_heads)
    assert vision == (32, 1280, 3420, 16)
    assert (qwen.llm_layers, qwen.llm_hidden, qwen.llm_mlp, qwen.llm_kv_heads, qwen.head_dim) == (
        28, 3584, 18944, 4, 128,
    )  # fmt: skip
    assert (qwen.tokens_per_frame, qwen.pooled_tokens_per_frame, qwen.newline_tokens) == (1024, 256, 0)
    assert qwen.vision_windows == (64,) * 16 and qwen.vision_full_layers == (7, 15, 23, 31)
    merger = (qwen.temporal_patch, qwen.patch_dim, qwen.projector_group, qwen.projector_hidden)
    assert merger == (2, 1176, 4, 5120)
    assert qwen.vision_gated_mlp and qwen.encoder_frames(32) == 16 and qwen.encoder_frames(33) == 17
    assert qwen.stock_tokens(32) == 4096 and default_frames("qwen2.5-vl-7b") == 32


def test_qwen_windows_follow_the_frame_size() -> None:
    """1280×720 resized under max_pixels is 336×588: 24×42 patches, 12×21 merged tokens, cut into
    4×4-token windows: 3 rows of five 64-patch windows and one 16-patch window."""
    shape = architecture_shape("qwen2.5-vl-7b", frame_size=(336, 588))
    assert (shape.tokens_per_frame, shape.pooled_tokens_per_frame) == (1008, 252)
    assert shape.vision_windows == ((64,) * 5 + (16,)) * 3
    assert qwen_grid((336, 588)) == (24, 42) and qwen_grid((448, 448)) == (32, 32)


@pytest.mark.parametrize(
    ("size", "message"),
    [((300, 588), "multiples of 28"), ((0, 448), "multiples of 28"), ((476, 448), "max_pixels=200704")],
)
def test_qwen_frame_size_is_checked(size: tuple[int, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        architecture_shape("qwen2.5-vl-7b", frame_size=size)


@pytest.mark.parametrize("model", ["llava-ov-7b", "llava-video-7b", "tiny"])
def test_llava_refuses_a_frame_size(model: str) -> None:
    with pytest.raises(ConfigError, match=r"Qwen2\.5-VL only"):
        architecture_shape(model, frame_size=(336, 588))


def test_local_folders_of_both_families(tmp_path: Path) -> None:
    from earlytom.models.qwen_vl.architecture import qwen25_vl_7b_config

    qwen25_vl_7b_config().save_pretrained(tmp_path / "qwen")
    assert architecture_shape(str(tmp_path / "qwen")) == architecture_shape("qwen2.5-vl-7b")
    assert flops_presets(str(tmp_path / "qwen")) == flops_presets("qwen2.5-vl-7b")
    config = architecture_config("llava-ov-7b")
    config.mm_spatial_pool_mode = "average"
    config.save_pretrained(tmp_path / "video")
    assert architecture_shape(str(tmp_path / "video")) == architecture_shape("llava-video-7b")


def test_shape_checks_its_new_fields(qwen: ArchitectureShape) -> None:
    with pytest.raises(InputError, match="vision_windows"):
        replace(qwen, vision_windows=(64,) * 15)
    with pytest.raises(InputError, match="vision_full_layers"):
        replace(qwen, vision_full_layers=(7, 32))
    with pytest.raises(InputError, match="projector_group"):
        replace(qwen, projector_group=3)
    with pytest.raises(InputError, match="newline_tokens"):
        replace(qwen, newline_tokens=-1)


# --- Qwen2.5-VL-7B: the paper's 554.7 T ----------------------------------------------------------------


def test_qwen_paper_convention_is_the_llava_rules(qwen: ArchitectureShape) -> None:
    """16 temporal patches × 1024 patches as one joint sequence through all 32 blocks (windows and
    the third MLP matrix not counted, as the paper's rule counts two), 4096 tokens into the LLM."""
    base = baseline_flops(qwen, frames=32)
    assert base.vision == 32 * dense(16 * 1024, D, M) and base.llm == 28 * dense(4096, d, f)
    assert base.projector == 0
    assert round(base.total / TERA, 2) == 54.85
    assert round(total(architecture_shape("qwen2.5-vl-7b", frame_size=(336, 588)), 32), 2) == 53.60
    plain = replace(qwen, vision_windows=(), vision_full_layers=(), vision_gated_mlp=False)
    assert baseline_flops(plain, frames=32) == base


def test_qwen_554_7_is_not_reached_within_max_pixels(qwen: ArchitectureShape) -> None:
    """No count consistent with ≤ 256 tokens per temporal patch reaches 554.7 T: even taking each of
    the 32 frames as its own 1024-patch frame (no temporal patches) gives 160.41 T, and counting
    SwiGLU's and the ViT's third matrix and 2 FLOPs per multiply-add on top stays below 370 T."""
    per_frame = replace(qwen, temporal_patch=1)  # 32 × 1024 joint vision tokens, 32 × 256 LLM tokens
    assert round(total(per_frame, 32), 2) == 160.41
    third = 32 * (32 * 1024) * D * M + 28 * (32 * 256) * d * f  # the third MLP matrix, both sides
    assert 2 * (total(per_frame, 32) + third / TERA) < 370 < 554.7


def test_qwen_nearest_counts_to_554_7(qwen: ArchitectureShape) -> None:
    """The two nearest counts found, neither the model: (a) 1024 merged tokens per temporal patch
    (896×896 frames, 4× max_pixels) with SwiGLU's third LLM matrix: 554.84 T; (b) 448×448 frames
    without temporal patches or the 2×2 merger (32·1024 patches into the ViT and the LLM), same
    third matrix: 553.54 T. At 15 % neither comes near 67.7 T: (a) spends 96.0 T of vision in blocks
    0..7 alone; (b) needs 76.46 T even when every merge fires (32→20→12→8) and Stage III is on."""
    four_x = replace(qwen, tokens_per_frame=4096, pooled_tokens_per_frame=1024, vision_windows=())
    swiglu = 28 * 16384 * d * f
    assert round(total(four_x, 32) + swiglu / TERA, 2) == 554.84
    unmerged = replace(qwen, temporal_patch=1, pooled_tokens_per_frame=1024, projector_group=1)
    assert round(total(unmerged, 32) + 28 * 32768 * d * f / TERA, 2) == 553.54
    first_stage = 8 * dense(16 * 4096, D, M) / TERA  # blocks 0..7 before the first prune layer
    assert round(first_stage, 1) == 96.0 and first_stage > 67.7
    tokens = round(0.15 * 32 * 1024)  # 4915 at 15 %; Stage III keeps 2458 in layers 18..27
    fewest = prefill_flops(unmerged, frames_per_stage=(32, 20, 12, 8), prune_layers=(7, 15, 23),
                           visual_tokens=tokens, inner_layer=18, inner_ratio=0.5)  # fmt: skip
    third = (18 * tokens + 10 * inner_kept(tokens, 0.5)) * d * f
    assert round((fewest.total + third) / TERA, 2) == 76.46


# --- Qwen2.5-VL-7B: EarlyTom and the per-frame convention -----------------------------------------------


def test_qwen_earlytom_at_15_percent(qwen: ArchitectureShape) -> None:
    """Placeholder preset: prune layers 7,15,23 (τ 0.6 at 15 %); frames count temporal patches."""
    config = preset("videomme", 0.15, tau=0.6, prune_layers=(7, 15, 23))
    paper = flops_report(qwen, frames=32, config=config)
    most, none = paper.earlytom
    assert most.frames_per_stage == (16, 10, 6, 4) and none.frames_per_stage == (16, 16, 16, 16)
    assert (most.visual_tokens, none.visual_tokens) == (616, 615)  # no newline
    assert (round(most.flops.total / TERA, 2), round(none.flops.total / TERA, 2)) == (15.98, 32.72)
    off = flops_report(qwen, frames=32, config=config, inner_merge=False).earlytom[0]
    assert round(off.flops.total / TERA, 2) == 16.58
    per_frame = flops_report(qwen, frames=32, config=config, convention="per-frame")
    assert round(per_frame.baseline.flops.total / TERA, 2) == 40.87
    assert [round(r.flops.total / TERA, 2) for r in per_frame.earlytom] == [9.37, 14.13]


def test_qwen_per_frame_counts_window_attention_per_window(qwen: ArchitectureShape) -> None:
    base = baseline_flops(qwen, frames=32, convention="per-frame")
    linear = 4 * 1024 * D * D + 3 * 1024 * D * M  # q, k, v, o and the gated MLP, per frame and block
    full = linear + 2 * 1024 * 1024 * D
    windowed = linear + 2 * 16 * 64 * 64 * D  # 16 windows of 64 patches
    patch_embedding = 16 * 1024 * 1176 * D
    assert base.vision == patch_embedding + 16 * (4 * full + 28 * windowed)
    assert base.projector == 16 * 256 * 5120 * (4 * D + d)  # the merger on 2×2 groups
    no_windows = baseline_flops(replace(qwen, vision_windows=()), frames=32, convention="per-frame")
    assert no_windows.vision - base.vision == 16 * 28 * 2 * (1024 * 1024 - 16 * 64 * 64) * D
    ragged = architecture_shape("qwen2.5-vl-7b", frame_size=(336, 588))
    run = prefill_flops(ragged, frames_per_stage=[1], visual_tokens=1, convention="per-frame")
    attention = 2 * 3 * (5 * 64 * 64 + 16 * 16) * D  # one frame, one windowed block
    rest = 4 * 1008 * D * D + 3 * 1008 * D * M
    assert run.vision == 1008 * 1176 * D + 4 * (rest + 2 * 1008**2 * D) + 28 * (rest + attention)


def test_qwen_frames_per_stage_counts_temporal_patches(qwen: ArchitectureShape) -> None:
    config = preset("videomme", 0.15, tau=0.6, prune_layers=(7, 15, 23))
    (run,) = flops_report(qwen, frames=32, config=config, frames_per_stage=(16, 12, 9, 7)).earlytom
    assert run.frames_per_stage == (16, 12, 9, 7)
    with pytest.raises(ConfigError, match="16 temporal patches of 2 frames"):
        flops_report(qwen, frames=32, config=config, frames_per_stage=(32, 20, 12, 8))
    with pytest.raises(ConfigError, match=r"1\.\.4096 \(the stock model's count\)"):
        flops_report(qwen, frames=32, visual_tokens=4097)


def test_qwen_presets_are_the_placeholder() -> None:
    assert flops_presets("qwen2.5-vl-7b") == {
        "default": {0.10: (0.5, (7, 15, 23)), 0.15: (0.6, (7, 15, 23)), 0.20: (0.7, (7, 15, 23)),
                    0.25: (0.8, (7, 15, 23))},
    }  # fmt: skip


# --- the command line -------------------------------------------------------------------------------------


def invoke(*args: str):
    return CliRunner().invoke(flops, list(args), catch_exceptions=False)


def test_cli_qwen_at_15_percent() -> None:
    result = invoke("--model", "qwen2.5-vl-7b", "--retention", "0.15")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "qwen2.5-vl-7b · 32 frames" in out and "32 frames → 16" in out and "prune layers 7,15,23" in out
    assert "54.85" in out and "15.98" in out and "32.72" in out and "16→10→6→4" in out
    per_frame = invoke("--model", "qwen2.5-vl-7b", "--frame-size", "336x588", "--convention", "per-frame")
    assert per_frame.exit_code == 0, per_frame.stderr
    assert "40.18" in per_frame.stdout and "1008 vision tokens → 252" in per_frame.stdout
    assert "windows of ≤ 64 patches outside blocks 7,15,23,31" in per_frame.stdout


def test_cli_llava_video_paper_convention() -> None:
    result = invoke("--model", "llava-video-7b", "--frames", "64", "--convention", "paper")
    assert result.exit_code == 0, result.stderr
    assert "229.04" in result.stdout and "148.87" in result.stdout and "80.17" in result.stdout
    assert "729 vision tokens → 169 visual tokens" in result.stdout
    default = invoke("--model", "llava-video-7b", "--retention", "0.15", "--json")
    data = json.loads(default.stdout)
    assert data["frames"] == 64 and data["baseline"]["visual_tokens"] == 64 * 169 + 1
    assert data["config"]["prune_layers"] == [8, 21, 23]
    assert [round(run["total"] / TERA, 2) for run in data["earlytom"]] == [91.59, 156.26]


def test_cli_qwen_json() -> None:
    data = json.loads(invoke("--model", "qwen2.5-vl-7b", "--json").stdout)
    assert data["frames"] == 32 and data["baseline"]["frames_per_stage"] == [16]
    assert data["baseline"]["visual_tokens"] == 4096 and round(data["baseline"]["total"] / TERA, 2) == 54.85


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "qwen2.5-vl-7b", "--frame-size", "abc"], "--frame-size=abc is not HxW"),
        (["--model", "qwen2.5-vl-7b", "--frame-size", "300x588"], "multiples of 28"),
        (["--model", "qwen2.5-vl-7b", "--frame-size", "476x448"], "more than the authors' max_pixels=200704"),
        (["--model", "llava-ov-7b", "--frame-size", "336x588"], "is for Qwen2.5-VL only"),
        (["--model", "llava-video-7b", "--frame-size", "336x588"], "is for Qwen2.5-VL only"),
        (["--model", "qwen2.5-vl-7b", "--retention", "0.15", "--frames-per-stage", "32,20,12,8"],
         "temporal patches"),
        (["--model", "qwen2.5-vl-7b", "--retention", "0.12"], "pass --prune-layers"),
        (["--model", "llava-video-13b"], "unknown model 'llava-video-13b'"),
    ],
)  # fmt: skip
def test_cli_family_errors_are_one_line(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_unknown_model_lists_the_new_ids() -> None:
    with pytest.raises(ModelError, match=r"llava-video-7b, qwen2\.5-vl-7b"):
        architecture_shape("llava-ov-72b")
