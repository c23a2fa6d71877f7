"""Stage III (inner-LLM merge) and the layer-by-layer prefill/decode loop.

The fold is checked against a literal transcription of HoliTom's loop; the decoder loop against
HF `generate` (merge off), eager attention (the row that picks the kept tokens) and a cache-less
from-scratch computation of the shortened sequence (merge on).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from earlytom.compression.inner_merge import fold_visual_tokens, kept_count
from earlytom.config import EarlyTomConfig
from earlytom.errors import ConfigError, InputError
from earlytom.models.generation import (
    SamplingConfig,
    decode,
    decode_greedy,
    find_visual_span,
    generate,
    prefill,
)
from earlytom.models.language import InnerMergeConfig
from earlytom.models.loading import LoadedModel, load_model
from earlytom.models.prompt import build_input_ids, embed_prompt

# ---------------------------------------------------------------------------------------------
# (a) the fold against HoliTom's loop


def slow_fold(
    hidden: torch.Tensor, span: tuple[int, int], attention: torch.Tensor, ratio: float
) -> tuple[torch.Tensor, list[int]]:
    """HoliTom's loop, literally: similarities to the kept states before any fold (fp64 here),
    then dropped tokens in index order, h_k <- (h_k + h_j) / 2 on the current kept state."""
    start, stop = span
    n = stop - start
    keep = min(n, max(1, round(n * (1 - ratio)))) if n else 0
    ranked = sorted(range(n), key=lambda i: (-attention[i].item(), i))
    kept = sorted(ranked[:keep])
    dropped = [i for i in range(n) if i not in kept]
    h = hidden[0].clone()  # (L, C)
    before = [h[start + i].double() for i in kept]
    for j in dropped:
        sims = [F.cosine_similarity(h[start + j].double(), k, dim=0).item() for k in before]
        best = max(range(len(kept)), key=lambda t: (sims[t], -t))  # lower index wins a tie
        target = start + kept[best]
        h[target] = (h[target] + h[start + j]) / 2
    rows = list(range(start)) + [start + i for i in kept] + list(range(stop, hidden.shape[1]))
    return h[rows][None], rows


def fold_case(seed: int) -> tuple[torch.Tensor, tuple[int, int], torch.Tensor, float]:
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    length, width = rng.randint(1, 60), rng.choice([3, 8, 16])
    start = rng.randint(0, length)
    stop = rng.randint(start, length)
    dtype = rng.choice([torch.float32, torch.float32, torch.bfloat16])
    hidden = torch.randn(1, length, width, generator=gen)
    if stop - start >= 4 and rng.random() < 0.3:  # identical rows: exact similarity ties
        hidden[0, start + 1] = hidden[0, start]
        hidden[0, stop - 1] = hidden[0, start]
    if rng.random() < 0.4:  # few distinct values: attention ties
        attention = torch.randint(0, 3, (stop - start,), generator=gen).float()
    else:
        attention = torch.rand(stop - start, generator=gen)
    ratio = rng.choice([0.0, 0.1, 0.3, 0.5, 0.5, 0.75, 0.9, 0.99])
    return hidden.to(dtype), (start, stop), attention, ratio


@pytest.mark.parametrize("seed", range(150))
def test_fold_equals_holitom_loop(seed: int) -> None:
    hidden, span, attention, ratio = fold_case(seed)
    got = fold_visual_tokens(hidden, span, attention, ratio)
    want, rows = slow_fold(hidden, span, attention, ratio)
    assert got.positions.tolist() == rows
    assert torch.equal(got.hidden, want)  # bitwise: same operations in the same order
    n = span[1] - span[0]
    assert got.num_dropped == n - kept_count(n, ratio)
    assert sorted(got.kept.tolist() + got.dropped.tolist()) == list(range(*span))
    assert set(got.targets.tolist()) <= set(got.kept.tolist())


def test_fold_cases_exercise_multi_round_folds_and_ties() -> None:
    """Some cases above fold several tokens into one kept token (several rounds) and have ties."""
    deepest, tied = 0, 0
    for seed in range(150):
        hidden, span, attention, ratio = fold_case(seed)
        got = fold_visual_tokens(hidden, span, attention, ratio)
        if got.num_dropped:
            deepest = max(deepest, int(torch.bincount(got.targets).max()))
        tied += int(attention.unique().numel() < attention.numel())
    assert deepest >= 5 and tied >= 20


def test_kept_count_rounds_like_holitom() -> None:
    assert kept_count(627, 0.5) == 314  # Python round: 313.5 -> 314
    assert kept_count(5, 0.5) == 2  # 2.5 -> 2 (banker's rounding)
    assert kept_count(1, 0.9) == 1  # never zero: dropped tokens need a home
    assert kept_count(0, 0.5) == 0
    assert kept_count(10, 0.0) == 10


def test_ties_go_to_the_lower_index() -> None:
    hidden = torch.randn(1, 6, 4)
    got = fold_visual_tokens(hidden, (1, 5), torch.tensor([1.0, 2.0, 2.0, 2.0]), 0.5)
    assert got.kept.tolist() == [2, 3]  # the first two of the three tied maxima
    hidden[0, 3] = hidden[0, 2]  # two identical kept tokens: the lower one receives the fold
    got = fold_visual_tokens(hidden, (1, 5), torch.tensor([1.0, 2.0, 2.0, 0.0]), 0.5)
    assert got.targets.tolist() == [2, 2]


# ---------------------------------------------------------------------------------------------
# the decoder loop on tiny


@pytest.fixture(scope="module")
def lively(tiny_cache: Path) -> LoadedModel:
    """A private tiny whose language model has larger random weights: its greedy text varies
    from token to token (stock tiny repeats one token), so token equality means something."""
    loaded = load_model("tiny", device=torch.device("cpu"), dtype=torch.float32, cache_dir=tiny_cache)
    gen = torch.Generator().manual_seed(1)
    params = [*loaded.model.model.language_model.parameters(), *loaded.model.lm_head.parameters()]
    with torch.no_grad():
        for p in params:
            if p.dim() == 2:
                p.normal_(0.0, 0.3, generator=gen)
    return loaded


def video_prompt(loaded: LoadedModel, visual: int, seed: int = 0) -> tuple[torch.Tensor, tuple[int, int]]:
    """inputs_embeds (1, L, C) of a chat prompt whose `visual` video placeholders hold random tokens."""
    model = loaded.model
    ids = build_input_ids(
        loaded.tokenizer,
        "What happens in the video?",
        num_video_tokens=visual,
        video_token_id=loaded.video_token_id,
    )
    scale = model.get_input_embeddings().weight.std()
    video = torch.randn(
        visual, model.config.text_config.hidden_size, generator=torch.Generator().manual_seed(seed)
    )
    embeds = embed_prompt(model, ids, video * scale, video_token_id=loaded.video_token_id)
    span = find_visual_span(ids, loaded.video_token_id)
    assert span is not None
    return embeds, span


def hf_generate(model: Any, embeds: torch.Tensor, steps: int) -> tuple[list[int], torch.Tensor]:
    with torch.no_grad():
        out = model.generate(
            inputs_embeds=embeds,
            max_new_tokens=steps,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    return out.sequences[0].tolist(), torch.stack([x[0] for x in out.logits])


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_merge_off_equals_hf_generate(lively: LoadedModel, attn: str) -> None:
    model = lively.model
    model.set_attn_implementation(attn)
    try:
        embeds, span = video_prompt(lively, 120)
        want, want_logits = hf_generate(model, embeds, 24)
        first, generation = prefill(model, embeds, visual_span=span, inner=None)
        logits = [generation.last_logits]
        while len(generation.tokens) < 24 and generation.tokens[-1] not in lively.eos_token_ids:
            generation.step()
            logits.append(generation.last_logits)
    finally:
        model.set_attn_implementation("sdpa")
    assert len(set(want)) > 10  # a varied answer, not one repeated token
    assert generation.tokens == want and first == want[0]
    torch.testing.assert_close(torch.stack(logits), want_logits, atol=1e-4, rtol=1e-4)
    assert generation.cache_lengths() == [embeds.shape[1] + len(want) - 1] * 24


def test_merge_off_on_stock_tiny_and_the_legacy_api(tiny_loaded: LoadedModel) -> None:
    embeds, span = video_prompt(tiny_loaded, 50, seed=3)
    want, _ = hf_generate(tiny_loaded.model, embeds, 8)
    assert generate(tiny_loaded.model, embeds, max_new_tokens=8, stop_ids=tiny_loaded.eos_token_ids) == want
    first, state = prefill(tiny_loaded.model, embeds)
    assert decode_greedy(tiny_loaded.model, first, state, max_new_tokens=8, stop_ids=set()) == want
    # Ratio 0 runs the merge path and drops nothing: still the stock answer.
    inner = InnerMergeConfig(18, 0.0)
    assert generate(tiny_loaded.model, embeds, max_new_tokens=8, visual_span=span, inner=inner) == want
    assert InnerMergeConfig.from_config(EarlyTomConfig(enabled=False)) is None
    assert InnerMergeConfig.from_config(EarlyTomConfig(inner_ratio=0.0)) is None
    assert InnerMergeConfig.from_config(EarlyTomConfig()) == InnerMergeConfig(18, 0.5)


def reference_logits(
    model: Any,
    embeds: torch.Tensor,
    span: tuple[int, int],
    inner: InnerMergeConfig,
    attention: torch.Tensor,
    fed: list[int],
) -> torch.Tensor:
    """Logits after the prompt and the tokens `fed`, from scratch and without a cache: the stock
    model up to layer K-1 on everything, fold the prompt's rows, then layers K.. on the short
    sequence (prompt rows at their kept positions, fed tokens at L, L+1, ...) with a causal mask."""
    lm = model.model.language_model
    length, k = embeds.shape[1], inner.layer
    new = model.get_input_embeddings()(torch.tensor([fed], dtype=torch.long)) if fed else embeds[:, :0]
    with torch.no_grad():
        hidden = lm(inputs_embeds=torch.cat([embeds, new], 1), output_hidden_states=True).hidden_states[k]
        folded = fold_visual_tokens(hidden[:, :length], span, attention, inner.ratio)
        x = torch.cat([folded.hidden, hidden[:, length:]], 1)  # (1, L' + fed, C)
        positions = torch.cat([folded.positions, torch.arange(length, length + len(fed))])
        n = x.shape[1]
        mask = torch.full((n, n), float("-inf")).triu(1)[None, None]  # (1, 1, n, n) additive causal
        rotary = lm.rotary_emb(x, positions[None])
        for layer in lm.layers[k:]:
            x = layer(x, attention_mask=mask, position_embeddings=rotary)
        return model.lm_head(lm.norm(x))[0, -1]


@pytest.mark.parametrize(("layer", "ratio"), [(18, 0.5), (1, 0.5), (23, 0.9), (7, 0.25)])
def test_merge_on_cache_lengths_and_decode_continue_the_short_sequence(
    lively: LoadedModel, layer: int, ratio: float
) -> None:
    model, inner = lively.model, InnerMergeConfig(layer, ratio)
    embeds, span = video_prompt(lively, 101, seed=layer)
    length, visual = embeds.shape[1], span[1] - span[0]
    first, generation = prefill(model, embeds, visual_span=span, inner=inner)
    assert generation.dropped == visual - kept_count(visual, ratio) > 0
    short = length - generation.dropped
    assert generation.cache_lengths() == [length] * layer + [short] * (24 - layer)
    assert generation.positions.shape == (short,) and int(generation.positions[-1]) == length - 1
    assert generation.visual_attention is not None
    attention = generation.visual_attention
    torch.testing.assert_close(
        generation.last_logits,
        reference_logits(model, embeds, span, inner, attention, []),
        atol=1e-4,
        rtol=1e-4,
    )
    for step in range(1, 4):
        generation.step()
        assert generation.next_position == length + step
        assert generation.cache_lengths() == [length + step] * layer + [short + step] * (24 - layer)
        want = reference_logits(model, embeds, span, inner, attention, generation.tokens[:-1])
        torch.testing.assert_close(generation.last_logits, want, atol=1e-4, rtol=1e-4)
    assert generation.tokens[0] == first


def test_attention_row_equals_eager_attention(lively: LoadedModel) -> None:
    model, inner = lively.model, InnerMergeConfig(18, 0.5)
    embeds, span = video_prompt(lively, 80, seed=5)
    _, ours = prefill(model, embeds, visual_span=span, inner=inner)
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            maps = model.model.language_model(inputs_embeds=embeds, output_attentions=True).attentions
        _, eager = prefill(model, embeds, visual_span=span, inner=inner)
    finally:
        model.set_attn_implementation("sdpa")
    want = maps[inner.layer - 1][0, :, -1, span[0] : span[1]].mean(0)  # (V,) mean over heads
    assert ours.visual_attention is not None and eager.visual_attention is not None
    # Same hidden states (eager all the way): the row equals eager's up to float rounding.
    torch.testing.assert_close(eager.visual_attention, want, atol=1e-6, rtol=1e-5)
    # SDPA below layer K-1 rounds differently (amplified by this model's large weights).
    torch.testing.assert_close(ours.visual_attention, want, atol=2e-5, rtol=1e-3)
    # The driver gives the same answer with eager attention (its masks are built for each backend).
    assert torch.equal(ours.positions, eager.positions)
    torch.testing.assert_close(ours.last_logits, eager.last_logits, atol=1e-4, rtol=1e-4)


def test_sampling_is_reproducible_with_a_seed(lively: LoadedModel) -> None:
    model = lively.model
    embeds, span = video_prompt(lively, 60, seed=7)
    inner = InnerMergeConfig(18, 0.5)

    def run(sampling: SamplingConfig | None) -> list[int]:
        return generate(model, embeds, max_new_tokens=12, visual_span=span, inner=inner, sampling=sampling)

    state = torch.random.get_rng_state()
    hot = SamplingConfig(temperature=2.0, top_p=0.95, seed=11)
    assert run(hot) == run(hot)
    assert run(hot) != run(SamplingConfig(temperature=2.0, top_p=0.95, seed=12))
    assert torch.equal(torch.random.get_rng_state(), state)  # a seeded run leaves the global RNG alone
    greedy = run(None)
    assert run(SamplingConfig(top_k=1, seed=0)) == greedy
    assert run(SamplingConfig(top_p=1e-6, seed=0)) == greedy


def test_bad_arguments(lively: LoadedModel) -> None:
    model = lively.model
    embeds, span = video_prompt(lively, 10)
    length = embeds.shape[1]
    with pytest.raises(ConfigError, match="inner_layer=24"):
        prefill(model, embeds, visual_span=span, inner=InnerMergeConfig(24, 0.5))
    with pytest.raises(InputError, match="before its last token"):
        prefill(model, embeds, visual_span=(length - 3, length), inner=InnerMergeConfig(18, 0.5))
    with pytest.raises(ConfigError, match="inner_ratio"):
        InnerMergeConfig(18, 1.0)
    with pytest.raises(InputError, match="temperature"):
        SamplingConfig(temperature=0.0)
    with pytest.raises(InputError, match="max_new_tokens"):
        decode(prefill(model, embeds)[1], max_new_tokens=0)
    with pytest.raises(InputError, match="not contiguous"):
        find_visual_span(torch.tensor([[1, 5, 5, 2, 5]]), 5)
    assert find_visual_span(torch.tensor([[1, 2]]), 5) is None
