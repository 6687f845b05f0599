"""Acceptance on the bundled SmolLM2-135M (slow): sink heads, value drain, residual peak, and a
head that is dormant on prose/code but active on numbers, shown by its ablation.

Regenerate the numbers with:
    interp sinks --model smollm2-135m --out runs/sinks --seq-len 48 --n-seqs 6 --max-heads 16
(2026-11: L20H6 sink 0.97/0.95/0.52 on prose/code/numbers, Δloss 0.0006/0.0005/0.023 nats)."""

from __future__ import annotations

import pytest

from interp.phenomena import default_domains, domain_tokens, sink_stats
from interp.phenomena.dormant import ablation_losses

pytestmark = pytest.mark.slow


def test_sink_heads_value_drain_residual_peak(smollm2):
    toks = domain_tokens(smollm2, default_domains()[0], seq_len=48, n_seqs=6)
    st = sink_stats(smollm2, toks)
    sink = st.sink_score > 0.9
    assert sink.sum() >= 10  # observed 18 of 270 heads on prose
    # drained values: at sink heads the first token's value norm is far below the others'
    assert st.value_drain[sink].median() < 0.2 < st.value_drain[~sink].median()
    # residual peak from layer 11 on (observed ~120x the largest other token)
    assert st.resid_peak[11:20].min() > 50 and st.resid_peak[:10].max() < 5


def test_switching_head_is_dormant_on_prose_and_active_on_numbers(smollm2):
    doms = {d.name: domain_tokens(smollm2, d, seq_len=48, n_seqs=6) for d in default_domains()}
    sink, dloss = {}, {}
    for name, t in doms.items():
        sink[name] = float(sink_stats(smollm2, t).sink_score[20, 6])
        clean, (ab,) = ablation_losses(smollm2, t, [(20, 6)], "bos")
        dloss[name] = ab - clean
    assert sink["prose"] > 0.9 and sink["code"] > 0.9 and sink["numbers"] < 0.7
    assert abs(dloss["prose"]) < 0.003 and abs(dloss["code"]) < 0.003
    assert dloss["numbers"] > 0.015
