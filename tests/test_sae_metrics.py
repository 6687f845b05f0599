"""Metrics against their definitions: row statistics by hand, spliced CE vs hand-written hooks and exact limits."""

import pytest
import torch
import torch.nn.functional as F

from interp.dictionaries import SAEConfig, TensorSource, make
from interp.dictionaries.metrics import evaluate_rows, splice_hooks, spliced_ce


def _identity_sae(d, hook):
    """A ReLU SAE that reconstructs exactly: f = [ReLU(x), ReLU(-x)], x_hat = f[:d] - f[d:]."""
    sae = make(SAEConfig(arch="relu", d_in=d, d_sae=2 * d, hook_in=hook))
    with torch.no_grad():
        eye = torch.eye(d)
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def _tokens(n=3, T=12, seed=0):
    t = torch.randint(1, 99, (n, T), generator=torch.Generator().manual_seed(seed))
    t[:, 0] = 0
    return t


def test_row_metrics_match_definitions():
    torch.manual_seed(0)
    X = torch.randn(500, 8) * 2 + 1
    sae = make(SAEConfig(arch="topk", d_in=8, d_sae=32, k=3, hook_in="h"))
    m = evaluate_rows(sae, TensorSource({"h": X}), n_rows=450, batch_size=64)
    x = X[:450]
    with torch.no_grad():
        code = sae.encode(x)
        xh = sae(x)
    assert m.n_rows == 450
    # a float32 mean of integer counts: 8 eps32
    assert m.l0 == pytest.approx(float((code.acts > 0).float().sum(-1).mean()), rel=1e-6)
    fvu = float(((x - xh) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    # float32 sums over rows x d, reordered (streamed in batches): rel 1e-5 = 84 eps32
    assert m.fvu == pytest.approx(fvu, rel=1e-5) and m.explained_variance == pytest.approx(1 - fvu, rel=1e-5)
    assert m.dead_fraction == pytest.approx(float((code.acts.sum(0) == 0).float().mean()))
    # float32 mean of cosines over rows, reordered: 84 eps32
    assert m.cosine == pytest.approx(float(F.cosine_similarity(x, xh).mean()), rel=1e-5)


def test_perfect_and_zero_dictionaries_bound_ce_recovered(tiny_llama):
    hook = "blocks.0.hook_resid_post"
    sae = _identity_sae(tiny_llama.cfg.d_model, hook)
    m = spliced_ce(tiny_llama, sae, _tokens())
    # an exact dictionary spliced in: logits move by float32 rounding only (~1e-6); CE recovered divides that by
    # CE(zero) - CE(orig) (~0.1), so 1e-4
    assert m.ce_dict == pytest.approx(m.ce_orig, abs=1e-5) and m.ce_recovered == pytest.approx(1.0, abs=1e-4)
    assert m.kl_dict == pytest.approx(0.0, abs=1e-6) and m.kl_zero > 0
    with torch.no_grad():
        sae.W_dec.zero_()  # reconstruction = 0 = zero ablation
    m0 = spliced_ce(tiny_llama, sae, _tokens())
    # a zero dictionary: CE(dict) = CE(zero) up to float32 rounding of the same forward; recovered as above
    assert m0.ce_dict == pytest.approx(m0.ce_zero, abs=1e-6) and m0.ce_recovered == pytest.approx(0.0, abs=1e-4)
    assert m0.kl_score == pytest.approx(0.0, abs=1e-4)


def test_spliced_ce_equals_hand_written_hook(tiny_llama):
    """A random SAE spliced at resid_post: CE and KL equal a manual run_with_hooks computation."""
    model, hook = tiny_llama, "blocks.0.hook_resid_post"
    torch.manual_seed(1)
    sae = make(SAEConfig(arch="topk", d_in=model.cfg.d_model, d_sae=64, k=8, hook_in=hook))
    toks = _tokens(seed=2)

    def repl(act, hook):
        with torch.no_grad():
            new = sae(act.reshape(-1, act.shape[-1])).reshape(act.shape)
        return torch.cat([act[:, :1], new[:, 1:]], 1)

    lg = model.run_with_hooks(toks, return_type="logits", fwd_hooks=[(hook, repl)])
    lg0 = model(toks, return_type="logits")
    lp, lp0 = lg[:, :-1].log_softmax(-1), lg0[:, :-1].log_softmax(-1)
    ce = float(-lp.gather(-1, toks[:, 1:, None]).mean())
    kl = float((lp0.exp() * (lp0 - lp)).sum(-1).mean())
    m = spliced_ce(model, sae, toks, batch_size=2)
    # float32 streamed in batches: CE 84 eps32; KL ~0 relative 1e-4, floored 1e-7
    assert m.ce_dict == pytest.approx(ce, rel=1e-5) and m.kl_dict == pytest.approx(kl, rel=1e-4, abs=1e-7)
    assert m.n_tokens == toks.shape[0] * (toks.shape[1] - 1)


def test_errors(tiny_llama):
    sae = _identity_sae(tiny_llama.cfg.d_model, "blocks.9.hook_resid_post")
    with pytest.raises(KeyError, match="no hook point matches"):
        spliced_ce(tiny_llama, sae, _tokens())
    with pytest.raises(ValueError, match="tokens must be"):
        spliced_ce(tiny_llama, sae, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="mode must be"):
        splice_hooks(sae, mode="mean")
    wrong = _identity_sae(7, "blocks.0.hook_resid_post")
    with pytest.raises(ValueError, match="expects d_in=7"):
        spliced_ce(tiny_llama, wrong, _tokens())
    assert not tiny_llama.hook_dict["blocks.0.hook_resid_post"].fwd_hooks  # removed after the error
