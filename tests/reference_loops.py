"""Slow, literal transcriptions of DESIGN §3 used as test oracles (per-pair cosine, Python loops)."""

from __future__ import annotations

import math
from itertools import pairwise

import torch
import torch.nn.functional as F


def sim(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.double(), b.double(), dim=-1).mean().item()


def segments(
    hidden: torch.Tensor, tau: float, ema: float, max_window: int, log=None
) -> list[tuple[int, int]]:
    """`log`, when a list, receives (kind, frames, lhs, rhs) of every float comparison, in order."""
    out, start, anchor, s_hat = [], 0, hidden[0], 1.0
    for i in range(1, hidden.shape[0]):
        s_hat = ema * sim(anchor, hidden[i]) + (1 - ema) * s_hat
        capped = i - start + 1 >= max_window
        if log is not None and not capped:  # the window cap is an integer rule: not a float decision
            log.append(("segment_close", (start, i), s_hat, tau))
        if s_hat < tau or capped:
            out.append((start, i - 1))
            start, anchor, s_hat = i, hidden[i], 1.0
    out.append((start, hidden.shape[0] - 1))
    return out


def merge(hidden, scores, tau, ema, max_window, drop_last_middle=True, log=None):
    frames, frame_scores = [], []
    for s, e in segments(hidden, tau, ema, max_window, log):
        seg = list(range(s, e + 1))
        if len(seg) <= 2:
            chosen = [(i, i, 1.0) for i in seg]
        else:
            mids = seg[1:-1]
            chosen = [(s, s, 1.0)]
            if len(mids) < 2:
                chosen += [(m, m, 1.0) for m in mids]
            else:
                tau_m = sim(hidden[s], hidden[e])
                sims = [sim(hidden[mids[j]], hidden[mids[j + 1]]) for j in range(len(mids) - 1)]
                i = 0
                while i < len(mids) - 1:
                    if log is not None:
                        log.append(("merge_threshold", (mids[i], mids[i] + 1, s, e), sims[i], tau_m))
                        if i + 1 < len(mids) - 1 and sims[i] > tau_m:  # `and` short-circuits
                            trio = (mids[i], mids[i] + 1, mids[i] + 2)
                            log.append(("merge_neighbour", trio, sims[i], sims[i + 1]))
                    if i + 1 < len(mids) - 1:
                        ok = sims[i] > tau_m and sims[i] > sims[i + 1]
                        w = sims[i] / (sims[i] + sims[i + 1])
                    else:
                        ok, w = sims[i] > tau_m, 1.0
                    if ok:
                        chosen.append((mids[i], mids[i + 1], w))
                        i += 2
                    else:
                        chosen.append((mids[i], mids[i], 1.0))
                        i += 1
                if i == len(mids) - 1 and not drop_last_middle:
                    chosen.append((mids[i], mids[i], 1.0))
            chosen.append((e, e, 1.0))
        for a, b, w in chosen:
            frames.append(w * hidden[a].double() + (1 - w) * hidden[b].double())
            if scores is not None:
                frame_scores.append(w * scores[a].double() + (1 - w) * scores[b].double())
    merged_scores = torch.stack(frame_scores) if scores is not None else None
    return torch.stack(frames), merged_scores


def select(features, scores, groups, retention, base_frames):
    """Token-by-token selection in the documented group order: head, statics, tail."""
    num_frames, p, _ = features.shape
    r_hat = min(retention * base_frames / num_frames, 1.0)
    k_d, k_s = math.ceil(p * r_hat), max(1, round(p * r_hat))
    picks: list[tuple[int, int]] = []

    def dynamic(t):
        order = sorted(range(p), key=lambda j: (-scores[t, j].item(), j))[:k_d]
        return [(t, j) for j in sorted(order)]

    def static(t):
        base, extra = divmod(p, k_s)
        out, start = [], 0
        for w in range(k_s):
            size = base + (1 if w < extra else 0)
            window = list(range(start, start + size))
            best = max(window, key=lambda j: (scores[t, j].item(), -j))
            out.append((t, best))
            start += size
        return out

    for s, e in groups:
        if e - s + 1 <= 2:
            for t in range(s, e + 1):
                picks += dynamic(t)
        else:
            picks += dynamic(s)
            for t in range(s + 1, e):
                picks += static(t)
            picks += dynamic(e)
    return picks


def released_plan(sim, num_frames, tau, ema, max_window, drop_last_middle=True):
    """The released planner verbatim, on a similarity callable: segments and (first, second, weight)
    per output frame. With tie_band = 0 the project's planner must equal it bit for bit."""
    segs, start, smoothed = [], 0, 1.0
    for i in range(1, num_frames):
        smoothed = ema * sim(start, i) + (1.0 - ema) * smoothed
        if smoothed < tau or i - start + 1 >= max_window:
            segs.append((start, i - 1))
            start, smoothed = i, 1.0
    segs.append((start, num_frames - 1))
    plan = []
    for start, end in segs:
        if end - start + 1 <= 2:
            plan += [(i, i, 1.0) for i in range(start, end + 1)]
            continue
        middle = list(range(start + 1, end))
        if len(middle) < 2:
            plan += [(start, start, 1.0), *((i, i, 1.0) for i in middle), (end, end, 1.0)]
            continue
        threshold = sim(start, end)
        pair = [sim(a, b) for a, b in pairwise(middle)]
        last = len(middle) - 1
        plan.append((start, start, 1.0))
        i = 0
        while i < last:
            if i + 1 < last:
                merge = pair[i] > threshold and pair[i] > pair[i + 1]
                weight = pair[i] / (pair[i] + pair[i + 1]) if merge else 1.0
            else:
                merge, weight = pair[i] > threshold, 1.0
            if merge:
                plan.append((middle[i], middle[i + 1], weight))
                i += 2
            else:
                plan.append((middle[i], middle[i], 1.0))
                i += 1
        if i == last and not drop_last_middle:
            plan.append((middle[last], middle[last], 1.0))
        plan.append((end, end, 1.0))
    return segs, plan
