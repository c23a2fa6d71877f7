"""Every model family: one registry, compression off equals the stock HF model, compression runs.

The tiny random-weight model of each family (`tiny`, `tiny-llava-video`, `tiny-qwen2.5-vl`) stands
in for its published checkpoint; the geometry (grids, layer counts, windows, merger, M-RoPE) is
the real one, so these paths are the ones the 7B models take.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from earlytom.config import EarlyTomConfig, preset
from earlytom.errors import ConfigError, ModelError
from earlytom.models.families import LLAVA_ONEVISION, LLAVA_VIDEO, QWEN25_VL
from earlytom.models.generation import prefill
from earlytom.models.loading import load_model
from earlytom.models.registry import MODELS, architecture_config, family_of, resolve_checkpoint
from earlytom.models.video import DecodedVideo, load_video
from earlytom.runtime.pipeline import EarlyTomPipeline

CPU = torch.device("cpu")
PROMPT = "What happens in this video?"


@pytest.fixture(scope="module")
def video_loaded(tiny_cache: Path):
    return load_model("tiny-llava-video", device=CPU, dtype=torch.float32, cache_dir=tiny_cache)


@pytest.fixture(scope="module")
def qwen_loaded(tiny_cache: Path):
    return load_model("tiny-qwen2.5-vl", device=CPU, dtype=torch.float32, cache_dir=tiny_cache)


def test_one_registry_names_every_family() -> None:
    ids = {"llava-ov-0.5b", "llava-ov-7b", "llava-video-7b", "qwen2.5-vl-7b", "tiny", "tiny-llava-video",
           "tiny-qwen2.5-vl"}  # fmt: skip
    assert ids <= set(MODELS)
    assert {MODELS[name].family for name in ("tiny", "llava-ov-7b")} == {LLAVA_ONEVISION}
    assert {MODELS[name].family for name in ("tiny-llava-video", "llava-video-7b")} == {LLAVA_VIDEO}
    assert {MODELS[name].family for name in ("tiny-qwen2.5-vl", "qwen2.5-vl-7b")} == {QWEN25_VL}
    assert (LLAVA_VIDEO.frames, LLAVA_VIDEO.pooling, QWEN25_VL.frames) == (64, "average", 32)
    with pytest.raises(ModelError, match=r"unknown model 'llava-next-7b'.*tiny-qwen2\.5-vl"):
        family_of("llava-next-7b")


def test_published_architectures_of_the_new_families() -> None:
    video = architecture_config("llava-video-7b")
    assert video.mm_spatial_pool_mode == "average" and video.text_config.hidden_size == 3584
    qwen = architecture_config("qwen2.5-vl-7b")
    assert (qwen.vision_config.depth, qwen.vision_config.hidden_size) == (32, 1280)
    assert list(qwen.vision_config.fullatt_block_indexes) == [7, 15, 23, 31]
    assert (qwen.text_config.num_hidden_layers, qwen.video_token_id) == (28, 151656)


def test_a_folder_is_classified_by_its_config(tiny_cache: Path, tmp_path: Path) -> None:
    assert family_of(str(resolve_checkpoint("tiny-qwen2.5-vl", cache_dir=tiny_cache))) is QWEN25_VL
    # tiny-llava-video is stored in the LLaVA-NeXT layout: a folder of it reads as LLaVA (its
    # pooling comes from its config).
    folder = resolve_checkpoint("tiny-llava-video", cache_dir=tiny_cache)
    assert family_of(str(folder)) is LLAVA_ONEVISION
    (tmp_path / "config.json").write_text('{"architectures": ["MistralForCausalLM"]}')
    with pytest.raises(ModelError, match="MistralForCausalLM checkpoint: earlytom loads"):
        family_of(str(tmp_path))


def test_family_presets() -> None:
    video = preset("videomme", 0.25, family="llava-video")
    assert (video.tau, video.prune_layers) == (0.6, (10, 21, 23))  # LLaVA-OV's is 0.7
    assert preset("longvideobench", 0.25, family="llava-video").prune_layers == (6, 21, 23)
    qwen = preset(None, 0.15, family="qwen2.5-vl")
    assert (qwen.tau, qwen.prune_layers) == (0.6, (7, 15, 23))
    with pytest.raises(ConfigError, match=r"unknown preset 'mvbench' for qwen2\.5-vl: choose one of default"):
        preset("mvbench", 0.15, family="qwen2.5-vl")


def test_tiny_llava_video_is_tiny_in_the_llava_next_layout(tiny_loaded, video_loaded) -> None:
    ours, theirs = video_loaded.model.state_dict(), tiny_loaded.model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert video_loaded.model.config.mm_spatial_pool_mode == "average"


def test_compression_off_logits_equal_stock_llava_video(video_loaded, jobs_frames) -> None:
    """LLaVA-NeXT's video path with average pooling, from HF's own modules: the vision tower's last
    hidden state, the projector, avg_pool2d(2) (27×27 -> 13×13), one newline, the HF language model."""
    model = video_loaded.model
    frames = DecodedVideo(jobs_frames.frames[:8], jobs_frames.indices[:8], 524, None, jobs_frames.path)
    prepared = EarlyTomPipeline(video_loaded, EarlyTomConfig(enabled=False), num_frames=8).prepare(
        frames, PROMPT
    )
    assert prepared.video.embeds.shape[0] == 8 * 169 + 1
    from earlytom.models.preprocess import preprocess_frames

    with torch.no_grad():
        hidden = model.model.vision_tower(preprocess_frames(frames.frames), output_hidden_states=True)
        features = model.model.multi_modal_projector(hidden.hidden_states[-1])  # (T, 729, C)
        grid = features.view(8, 27, 27, -1).permute(0, 3, 1, 2)  # (T, C, 27, 27)
        pooled = torch.nn.functional.avg_pool2d(grid, 2).flatten(2).transpose(1, 2)  # (T, 169, C)
        video = torch.cat([pooled.flatten(0, 1), model.model.image_newline[None]])  # (T·169 + 1, C)
        ids = prepared.input_ids
        embeds = model.get_input_embeddings()(ids)
        embeds[ids == model.config.video_token_id] = video
        stock = model(inputs_embeds=embeds).logits
        ours = model(inputs_embeds=prepared.inputs_embeds).logits
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=0)


def _short_clip(tmp_path: Path, frames: int = 4) -> DecodedVideo:
    from tests.videos import write_video

    return load_video(
        write_video(tmp_path / "clip.mp4", frames, width=96, height=64), frames, rounding="round"
    )


def test_compression_off_logits_equal_stock_qwen25_vl(qwen_loaded, tmp_path: Path) -> None:
    """HF's own Qwen2_5_VLForConditionalGeneration forward (its processor's tensors, its M-RoPE
    positions) against the pipeline with compression off: same logits. A short clip keeps the
    video's temporal extent below its spatial one, where transformers 5.24's get_rope_index places
    the text after the video where Qwen2.5-VL's reference does (README, "Model families")."""
    from earlytom.models.qwen_vl.preprocess import hf_video_kwargs, preprocess_video, sampled_fps

    clip = _short_clip(tmp_path)
    pipeline = EarlyTomPipeline(qwen_loaded, EarlyTomConfig(enabled=False), num_frames=4)
    prepared = pipeline.prepare(clip, PROMPT)
    inputs = preprocess_video(clip.frames, fps=sampled_fps(clip.total_frames, 4, clip.fps or 25.0))
    assert prepared.video.embeds.shape[0] == inputs.num_video_tokens  # no newline in Qwen2.5-VL
    model = qwen_loaded.model
    ids = prepared.input_ids
    kinds = (ids == qwen_loaded.video_token_id).int() * 2  # the processor's mm_token_type_ids: 2 = video
    with torch.no_grad():
        stock = model(input_ids=ids, mm_token_type_ids=kinds, **hf_video_kwargs(inputs)).logits[0, -1]
        _, generation = prefill(model, prepared.inputs_embeds, positions=prepared.positions)
    torch.testing.assert_close(generation.last_logits, stock, atol=1e-5, rtol=0)


def test_qwen_compresses_temporal_patches_and_answers(qwen_loaded, jobs_mp4: Path) -> None:
    pipeline = EarlyTomPipeline(qwen_loaded, preset(None, 0.15, family="qwen2.5-vl"))
    result = pipeline(jobs_mp4, PROMPT, max_new_tokens=4)
    frames = result.frames_per_stage
    assert frames[0] == 16 and frames[-1] < frames[0] and len(frames) == 4  # 32 frames in pairs
    per_frame = (result.visual_tokens_before) // 16
    assert result.visual_tokens_before == 16 * per_frame  # no newline token
    # Stage II keeps about r·B·P tokens: never fewer, at most one extra per frame (DESIGN §3).
    least = -(-15 * 16 * per_frame // 100)
    assert least <= result.visual_tokens_after <= least + frames[-1]
    assert result.extra["inner_merge"]["visual_tokens_dropped"] > 0 and result.token_ids


def test_qwen_kept_tokens_keep_their_m_rope_positions(qwen_loaded, tmp_path: Path) -> None:
    clip = _short_clip(tmp_path, frames=8)
    pipeline = EarlyTomPipeline(qwen_loaded, preset(None, 0.25, family="qwen2.5-vl", tau=1.0), num_frames=8)
    stock = EarlyTomPipeline(qwen_loaded, EarlyTomConfig(enabled=False), num_frames=8).prepare(clip, PROMPT)
    ours = pipeline.prepare(clip, PROMPT)
    video_id = qwen_loaded.video_token_id
    kept = ours.positions[:, ours.input_ids[0] == video_id]  # (3, N)
    every = {tuple(column) for column in stock.positions[:, stock.input_ids[0] == video_id].T.tolist()}
    assert {tuple(column) for column in kept.T.tolist()} <= every  # each keeps its stock position
    assert int(ours.positions[:, -1].max()) == int(kept.max()) + ours.positions.shape[1] - int(
        (ours.input_ids[0] == video_id).nonzero().max()) - 1  # fmt: skip


def test_qwen_last_prune_layer_must_attend_to_whole_frames(qwen_loaded) -> None:
    with pytest.raises(ConfigError, match=r"layer 27, a window-attention block.*7, 15, 23, 31"):
        EarlyTomPipeline(qwen_loaded, preset(None, 0.15, family="qwen2.5-vl", prune_layers=(15, 23, 27)))


def test_llava_video_exports_and_onnxruntime_agrees_with_torch(
    video_loaded, tiny_cache, jobs_mp4, tmp_path
) -> None:
    """The LLaVA-Video family through earlytom-export's job (fp32, no plans): validated ONNX
    stages whose ONNX Runtime run gives the torch path's frames, tokens and greedy answer."""
    pytest.importorskip("onnxruntime", reason="validation runs the export in ONNX Runtime")
    from earlytom.exporter.export import ExportSpec
    from earlytom.jobs import run_export

    config = preset("videomme", 0.15, family="llava-video")
    spec = ExportSpec(model="tiny-llava-video", config=config, precision="float32", cache_dir=tiny_cache,
                      validation_video=jobs_mp4, token_select="onnx")  # fmt: skip
    artifact = run_export(spec, tmp_path / "lv", None)
    assert artifact.manifest.geometry.pooled_tokens_per_frame == 169
    frames = load_video(jobs_mp4, 16)
    torch_run = EarlyTomPipeline(video_loaded, config, num_frames=16)(frames, PROMPT, max_new_tokens=6)
    ort_run = EarlyTomPipeline(video_loaded, artifacts=artifact, num_frames=16)(
        frames, PROMPT, max_new_tokens=6
    )
    assert ort_run.frames_per_stage == torch_run.frames_per_stage and torch_run.frames_per_stage[-1] < 16
    assert ort_run.visual_tokens_after == torch_run.visual_tokens_after < 16 * 169 + 1
    assert ort_run.token_ids == torch_run.token_ids


def test_qwen_export_is_refused_with_the_reason(tiny_cache) -> None:
    from click.testing import CliRunner

    from earlytom.cli.export import export

    result = CliRunner().invoke(export, ["--model", "tiny-qwen2.5-vl", "--skip-build"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert (
        len(lines) == 1 and "Qwen2.5-VL is not exportable yet" in lines[0] and "--backend torch" in lines[0]
    )
