"""Acceptance on the bundled SmolLM2-135M (slow): massive activations on the first token at dim 507
from layer 11 (~25,000), zeroing them breaks the model, setting them to their mean does not.

Regenerate with: interp massive --model smollm2-135m --out runs/massive --n 2 (held-out means per kind
from the next windows since issue 13; measured 2026-12 with them: loss clean 2.439, zero 16.253, mean 2.439;
KL zero 13.8246, mean 0.0000; before them:
(2026-11: loss clean 2.439, zero 16.25, mean 2.439; KL zero 13.8, mean 0.0000)."""

from __future__ import annotations

import pytest
import torch

from interp.phenomena import default_domains, domain_tokens, massive_ablation, massive_stats

pytestmark = pytest.mark.slow


def test_massive_activations_found_and_causal(smollm2):
    toks = torch.cat([domain_tokens(smollm2, d, 64, 1) for d in default_domains()[:2]])
    st = massive_stats(smollm2, toks)
    first = [e for e in st.entries if e.kind == "first"]
    assert {e.dim for e in first} >= {507}
    assert min(e.layer for e in first if e.dim == 507) == 11
    assert all(e.value > 10_000 for e in first if e.dim == 507)
    assert st.ratio[11] > 5000 and st.ratio[5] < 2000
    held = torch.cat([domain_tokens(smollm2, d, 64, 2)[1:] for d in default_domains()[:2]])  # the next window
    ab = massive_ablation(smollm2, toks, st, heldout=held)
    assert ab.hook == "blocks.11.hook_resid_post" and 507 in ab.dims
    assert ab.loss["zero"] > ab.loss["clean"] + 5  # the model breaks
    assert ab.mean_values["first"][ab.dims.index(507)] > 10_000 and ab.n_by_kind["first"] >= 2
    assert ab.kl["mean"] < 0.01 and ab.kl["random_zero"] < 0.01 < 1 < ab.kl["zero"]
