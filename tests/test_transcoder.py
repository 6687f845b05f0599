"""Transcoders: planted MLP-like maps are recovered; splicing replaces hook_mlp_out exactly as defined."""

import pytest
import torch
import torch.nn.functional as F

from interp.dictionaries import TensorSource, TrainConfig, train_sae
from interp.dictionaries.metrics import spliced_ce
from interp.dictionaries.registry import make
from interp.dictionaries.transcoder import transcoder_config, transcoder_hooks


def planted_mlp(n=40000, d_in=24, d_out=20, m=48, p=0.06, seed=0):
    """x = A @ D_in + noise, y = A @ D_out + 0.5: a sparse 'MLP' whose output features are D_out."""
    g = torch.Generator().manual_seed(seed)
    D_in = F.normalize(torch.randn(m, d_in, generator=g), dim=-1)
    D_out = F.normalize(torch.randn(m, d_out, generator=g), dim=-1)
    A = (torch.rand(n, m, generator=g) < p) * (torch.rand(n, m, generator=g) + 0.5)
    return A @ D_in + 0.01 * torch.randn(n, d_in, generator=g), A @ D_out + 0.5, D_out


@pytest.mark.parametrize("arch,kw", [("relu", dict(l1_coeff=0.3)), ("topk", dict(k=4))])
def test_transcoder_recovers_planted_output_features(arch, kw):
    X, Y, D_out = planted_mlp()
    hin, hout = transcoder_hooks(3)
    cfg = transcoder_config(3, d_model=24, expansion=4, arch=arch, d_out=20, **kw)
    assert (cfg.hook_in, cfg.hook_out, cfg.is_transcoder) == (hin, hout, True)
    r = train_sae(TensorSource({hin: X, hout: Y}), cfg,
                  TrainConfig(n_tokens=200_000, batch_size=256, lr=1e-2, warmup_steps=20, progress=False,
                              dead_after_tokens=20_000))
    cos = (F.normalize(r.sae.W_dec.detach(), dim=-1) @ D_out.T).max(0).values
    assert float((cos >= 0.9).float().mean()) >= 0.9
    assert r.fvu < 0.3


def test_transcoder_splice_equals_hand_written_replacement(tiny_llama):
    """CE with the transcoder spliced == CE of a forward pass whose mlp_out is set by hand to TC(ln2 input)."""
    model = tiny_llama
    d = model.cfg.d_model
    torch.manual_seed(0)
    tc = make(transcoder_config(1, d_model=d, expansion=2, arch="relu"))
    with torch.no_grad():
        tc.W_dec.mul_(0.3)
    toks = torch.randint(1, 99, (3, 10))
    toks[:, 0] = 0
    hin, hout = transcoder_hooks(1)
    _, cache = model.run_with_cache(toks, names_filter=lambda n: n == hin)
    with torch.no_grad():
        out = tc(cache[hin].reshape(-1, d)).reshape(3, 10, d)

    def set_out(act, hook):
        act = act.clone()
        act[:, 1:] = out[:, 1:]
        return act

    logits = model.run_with_hooks(toks, return_type="logits", fwd_hooks=[(hout, set_out)])
    logits0 = model(toks, return_type="logits")
    ce = lambda lg: F.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), toks[:, 1:].reshape(-1))
    m = spliced_ce(model, tc, toks)
    assert m.ce_dict == pytest.approx(float(ce(logits)), rel=1e-5)  # float32 CE over T*B tokens, reordered: 84 eps32
    assert m.ce_orig == pytest.approx(float(ce(logits0)), rel=1e-5)  # float32 CE over T*B tokens, reordered: 84 eps32
    assert m.hook_out == hout and m.hook_in == hin
    assert not model.hook_dict[hout].fwd_hooks  # hooks removed


def test_transcoder_helpers_validate():
    with pytest.raises(ValueError, match="non-negative integer"):
        transcoder_hooks(-1)
    with pytest.raises(ValueError, match="expansion"):
        transcoder_config(0, d_model=8, expansion=0)


def test_transcoder_regression_init_and_offset_inputs():
    """transcoder_init="regression": W_enc = c * B W_dec^T (B the least-squares map x -> y), b_enc = -mean(x) W_enc,
    and on inputs with a large common offset (as ln2.hook_normalized rows have) the planted output features are
    recovered with few dead latents."""
    from interp.dictionaries.train import init_b_dec

    X, Y, D_out = planted_mlp(seed=1)
    X = X + 3.0 * F.normalize(torch.ones(X.shape[1]), dim=0)  # a common component larger than the signal
    hin, hout = transcoder_hooks(3)
    cfg = transcoder_config(3, d_model=24, expansion=4, arch="topk", d_out=20, k=4)
    src = TensorSource({hin: X, hout: Y})
    tc = TrainConfig(n_tokens=200_000, batch_size=256, lr=1e-2, warmup_steps=20, progress=False,
                     dead_after_tokens=20_000, b_dec_init="mean", init_rows=40000)
    torch.manual_seed(0)
    sae = make(cfg)
    W_dec = sae.W_dec.detach().clone()
    init_b_dec(sae, src, tc, "cpu")
    xc, yc = X - X.mean(0), Y - Y.mean(0)
    B = torch.linalg.lstsq(xc, yc).solution
    ref = B @ W_dec.T
    assert float(F.cosine_similarity(sae.W_enc.detach().flatten(), ref.flatten(), dim=0)) > 0.9999  # ridge 1e-3
    # float32 mean of 40000 rows: ~eps32 x sqrt(40000) x |X|, |X| ~ 3
    assert torch.allclose(sae.b_enc, -(X.mean(0) @ sae.W_enc), atol=1e-4)
    assert torch.allclose(sae.b_dec, Y.mean(0), atol=1e-5)  # float32 mean of 40000 rows: ~eps32 x sqrt(40000) x |Y|
    r = train_sae(src, cfg, tc)
    cos = (F.normalize(r.sae.W_dec.detach(), dim=-1) @ D_out.T).max(0).values
    assert float((cos >= 0.9).float().mean()) >= 0.9
    assert r.dead_fraction < 0.5 and r.fvu < 0.3
    with pytest.raises(ValueError, match="transcoder_init"):
        TrainConfig(transcoder_init="tied")


def test_a_transcoder_without_an_output_hook_is_refused_by_name():
    """d_out set makes a transcoder; training one with no hook_out names the missing hook instead
    of asking the source for the hook ``None``."""
    from interp.dictionaries.base import SAEConfig

    X = torch.randn(64, 8)
    cfg = SAEConfig(d_in=8, d_sae=16, d_out=4, k=4, hook_in="x")
    with pytest.raises(ValueError, match="hook_out is empty"):
        train_sae(TensorSource({"x": X}), cfg, TrainConfig(n_tokens=16, batch_size=16))
