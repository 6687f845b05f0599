"""EAP / EAP-IG edge scores (interp/attribution/edges.py) against their definitions.

Ground truths used here: real edge patching (edge_patching.py) with a small eps (the derivative EAP
is, by definition), the model made linear in the final residual (EAP == patching exactly), the
bridge's own residual stream and an independent hook-level AtP at ``ln_final.hook_in``, the
bridge's ``ln1`` input hook as an all-heads intervention, and ig.py's layer IG at the embeddings.
All on tiny random models in float64 (Llama's RMSNorm computes in float32 internally, so the
Llama finite differences use a larger eps).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from browser import report_test
import torch

from interp.attribution.edge_patching import edge_patching
from interp.attribution.edges import (edge_attribution, edge_graph, layer_weights, receiver_input_hooks,
                                      sender_differences, sender_outputs)
from interp.models import load_model, scoped_hooks
from interp.tasks import ioi_task


def _gqa_llama():
    """A tiny grouped-query Llama (4 query heads, 2 key/value heads), float64."""
    from transformer_lens.model_bridge import TransformerBridge

    from interp.models.tiny import TinyConfig, char_tokenizer, tiny_hf_model

    tok = char_tokenizer()
    hf = tiny_hf_model(TinyConfig(arch="llama", n_heads=4, n_kv_heads=2), len(tok)).double()
    b = TransformerBridge.boot_transformers("tiny-llama", hf_model=hf, tokenizer=tok)
    b.eval()
    for p in b.parameters():
        p.requires_grad_(False)
    return b


_MODELS: dict = {}


def model_for(name):
    if name not in _MODELS:
        _MODELS[name] = _gqa_llama() if name == "gqa-llama" else load_model(name, device="cpu", dtype=torch.float64)
    return _MODELS[name]


def with_random_biases(name):
    """A fresh ``name`` whose bias parameters are random (the tiny models start with zero biases, which
    would hide a bias read wrongly)."""
    m = _gqa_llama() if name == "gqa-llama" else load_model(name, device="cpu", dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


def task_for(model, n=3):
    return ioi_task(model, n=n, seed=0)


def sample_edges(graph, per_kind=2):
    """The last ``per_kind`` edges into the last receiver of every kind (q, k, v, mlp, logits)."""
    out = []
    for kind in ("q", "k", "v", "mlp", "logits"):
        j = [j for j, r in enumerate(graph.receivers) if r.kind == kind][-1]
        out += [(i, j) for i in graph.mask[:, j].nonzero().flatten().tolist()[-per_kind:]]
    return out


# ---------------------------------------------------------------------------------- graph
@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-pythia", "gqa-llama"])
def test_graph_nodes_and_edges(name):
    m = model_for(name)
    g = edge_graph(m)
    L, H = m.cfg.n_layers, m.cfg.n_heads
    Hkv = 2 if name == "gqa-llama" else H
    n_emb = 2 if name == "tiny-gpt2" else 1  # GPT-2 adds learned positions
    assert len(g.senders) == n_emb + L * (H + 1)
    assert len(g.receivers) == L * (H + 2 * Hkv + 1) + 1
    assert [r.kind for r in g.receivers].count("k") == L * Hkv
    s, r = g.sender_index, g.receiver_index
    kv = "KV" if name == "gqa-llama" else "H"
    assert g.mask[s("embed"), :].all()  # the embedding feeds every receiver
    assert g.mask[:, r("logits")].all()  # every sender feeds the logits
    assert not g.mask[s("L0H1"), r("L0H0.q")]  # a head does not feed its own layer's attention
    assert not g.mask[s("L1H0"), r(f"L0{kv}0.k")]  # nor an earlier layer
    assert g.mask[s("MLP0"), r(f"L1{kv}1.v")]
    # sequential blocks: heads of layer l feed MLP l; Pythia's parallel blocks do not
    assert bool(g.mask[s("L1H2"), r("MLP1")]) == (name != "tiny-pythia")
    assert not g.mask[s("MLP1"), r("MLP1")]


@pytest.mark.parametrize("name", ["tiny-gpt2", "gqa-llama"])
def test_weights_read_equal_identity_probe(name):
    """W_Q/K/V/O and the biases read from the weight attributes (Linear, GPT-2 Conv1D) == probing the
    module with the identity (random biases, so that a bias read as zero fails)."""
    m = with_random_biases(name)
    for a, b in zip(layer_weights(m), layer_weights(m, probe=True)):
        assert a.b_o.abs().max() > 0 or name == "gqa-llama"  # Llama's o_proj has no bias
        for f in ("W_q", "W_k", "W_v", "W_o", "b_o"):
            # float64, the same weights read two ways
            torch.testing.assert_close(getattr(a, f), getattr(b, f), rtol=1e-12, atol=1e-12)
        for s in "qkv":
            torch.testing.assert_close(a.b_qkv[s], b.b_qkv[s], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-pythia", "gqa-llama"])
def test_residual_is_the_sum_of_sender_outputs(name):
    """The bridge's final residual (ln_final.hook_in) == sum of sender writes + attention output biases
    (random biases: the MLP's and the embedding's go into their senders' writes, the attention output's
    into the b_o term)."""
    m = with_random_biases(name)
    task = task_for(m)
    w = layer_weights(m)
    g = edge_graph(m, w)
    box = {}
    with scoped_hooks(m, fwd=[("ln_final.hook_in", lambda x, hook: box.update(r=x))]):
        Z, _ = sender_outputs(m, task.clean, g, w)
    total = Z.sum(0) + sum(lw.b_o for lw in w)
    # float64 sum of (2L+1) sender outputs vs the residual
    torch.testing.assert_close(total, box["r"], rtol=1e-9, atol=1e-9)


def test_all_heads_receiver_patch_equals_moving_the_attention_input():
    """Moving every q, k and v receiver of a layer by the same offset == moving ln1's input (the bridge's hook)."""
    m = model_for("gqa-llama")
    task = task_for(m)
    w = layer_weights(m)
    g = edge_graph(m, w)
    D, *_ = sender_differences(m, task, g, w)
    off = D[g.sender_index("MLP0")]
    B = task.clean.shape[0]
    js = [j for j, r in enumerate(g.receivers) if r.layer == 1 and r.kind in "qkv"]
    hooks = receiver_input_hooks(m, g, {j: (None, off) for j in js}, B)
    with torch.no_grad(), scoped_hooks(m, fwd=hooks):
        ours = m(task.clean)
    with torch.no_grad(), scoped_hooks(m, fwd=[("blocks.1.ln1.hook_in", lambda x, hook: x + off)]):
        ref = m(task.clean)
    with torch.no_grad():
        clean = m(task.clean)
    assert (ref - clean).abs().max() > 1e-6  # the intervention does something
    # float64 model with float32 RMSNorm internals (module docstring)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------- definitions
@pytest.mark.parametrize("name,eps,tol", [("tiny-gpt2", 1e-4, 1e-6), ("tiny-pythia", 1e-4, 1e-6),
                                          ("gqa-llama", 5e-2, 1e-3)])
def test_eap_is_the_derivative_of_edge_patching(name, eps, tol):
    """EAP(u->v) == d/d eps of m(clean, v's input moved by eps (z_u(corr) - z_u(clean))), every receiver kind."""
    m = model_for(name)
    task = task_for(m)
    r = edge_attribution(m, task, "eap")
    edges = sample_edges(r.graph)
    plus = edge_patching(m, task, edges, eps=eps).effects
    minus = edge_patching(m, task, edges, eps=-eps).effects
    fd = (plus - minus) / (2 * eps)  # central difference
    sc = torch.tensor([float(r.scores[i, j]) for i, j in edges], dtype=torch.float64)
    scale = sc.abs().max()
    assert scale > 0
    for (i, j), a, b in zip(edges, sc, fd):
        assert abs(a - b) <= tol * scale + 1e-12, (r.graph.edge_name(i, j), float(a), float(b))


def test_eap_equals_edge_patching_where_the_model_is_linear():
    """With ln_final's scale fixed to 1 the logit difference is linear in the final residual: EAP == patching."""
    m = model_for("tiny-gpt2")
    task = task_for(m)
    lin = [("ln_final.hook_scale", lambda x, hook: torch.ones_like(x))]
    with scoped_hooks(m, fwd=lin):
        r = edge_attribution(m, task, "eap")
        j = r.graph.receiver_index("logits")
        edges = [(i, j) for i in range(len(r.graph.senders))]
        p = edge_patching(m, task, edges, eps=1.0)
    sc = r.scores[:, j].double()
    assert sc.abs().max() > 1e-6
    # float64; linearised model: EAP == patching exactly
    torch.testing.assert_close(sc, p.effects, rtol=1e-8, atol=1e-10)
    # the unmodified model is not linear: there the two differ (so the check above has teeth)
    r0 = edge_attribution(m, task, "eap")
    p0 = edge_patching(m, task, edges, eps=1.0)
    assert (r0.scores[:, j].double() - p0.effects).abs().max() > 1e-7


@pytest.mark.parametrize("share", ["own", "all"])
def test_ig_activations_equal_edge_patching_where_the_model_is_linear(share):
    """Linear in the final residual (ln_final's scale fixed): every variant's logits scores == patching."""
    m = model_for("tiny-gpt2")
    task = task_for(m)
    lin = [("ln_final.hook_scale", lambda x, hook: torch.ones_like(x))]
    with scoped_hooks(m, fwd=lin):
        r = edge_attribution(m, task, "eap-ig-activations", steps=2, share=share)
        j = r.graph.receiver_index("logits")
        p = edge_patching(m, task, [(i, j) for i in range(len(r.graph.senders))], eps=1.0)
    assert r.scores[:, j].abs().max() > 1e-6
    torch.testing.assert_close(r.scores[:, j].double(), p.effects, rtol=1e-8, atol=1e-10)  # float64, as above


@pytest.mark.parametrize("name", ["tiny-gpt2", "gqa-llama"])
def test_ig_activations_group_scores_sum_to_the_group_patch(name):
    """Completeness per sender group (share="own"): sum over the group's edges -> m(x | z_n <- z_n(x~)) - m(x),
    the path integral of the metric along the interpolation; the Riemann error shrinks ~1/m."""
    from interp.attribution.edges import sender_groups

    m = model_for(name)
    task = task_for(m)
    groups = sender_groups(edge_graph(m))
    cache = {}

    def keep(h):
        return lambda x, hook: cache.__setitem__(h, x.detach())

    with torch.no_grad(), scoped_hooks(m, fwd=[(h, keep(h)) for h, _ in groups]):
        m(task.corrupt)
    with torch.no_grad():
        m_clean = task.metric(m(task.clean)).double().mean().item()
    patch = []
    for h, _ in groups:  # the group's noising activation patch, by an independent hook
        with torch.no_grad(), scoped_hooks(m, fwd=[(h, lambda x, hook, v=cache[h]: v)]):
            patch.append(task.metric(m(task.clean)).double().mean().item() - m_clean)
    patch = torch.tensor(patch)
    err = {}
    for steps in (4, 16):
        r = edge_attribution(m, task, "eap-ig-activations", steps=steps)
        sums = torch.tensor([r.scores[rows].double().sum().item() for _, rows in groups])
        err[steps] = (sums - patch).abs().max().item()
    assert patch.abs().max() > 1e-4
    assert err[16] < 0.05 * patch.abs().max() and err[16] < err[4] / 2.5, (err, patch)


@pytest.mark.parametrize("name", ["tiny-gpt2", "gqa-llama"])
def test_logits_scores_sum_to_residual_atp(name):
    """sum_u S(u -> logits) == AtP of the final residual, computed independently at ln_final.hook_in."""
    m = model_for(name)
    task = task_for(m)
    r = edge_attribution(m, task, "eap")
    total = r.scores[:, r.graph.receiver_index("logits")].sum()
    box = {}

    def leaf(x, hook):
        box["x"] = x.detach().requires_grad_(True)
        return box["x"]

    with torch.enable_grad(), scoped_hooks(m, fwd=[("ln_final.hook_in", leaf)]):
        mc = task.metric(m(task.clean)).sum()
        (g,) = torch.autograd.grad(mc, box["x"])
    x_clean = box["x"].detach()
    with torch.no_grad(), scoped_hooks(m, fwd=[("ln_final.hook_in", lambda x, hook: box.update(k=x))]):
        m(task.corrupt)
    atp = ((box["k"] - x_clean) * g).sum() / task.n
    # float64 sums of T x d terms: ~1e7 eps64 slack
    torch.testing.assert_close(total.double(), atp.double(), rtol=1e-9, atol=1e-12)


def test_eap_ig_embedding_edges_sum_to_layer_ig():
    """sum_v S_IG(embed -> v) == -(ig.py's left-Riemann layer IG at hook_embed, corrupted baseline), batch mean:
    the embedding's total gradient is the sum of the gradients through every receiver."""
    from interp.attribution.ig import layer_integrated_gradients

    m = model_for("gqa-llama")
    task = task_for(m)
    r = edge_attribution(m, task, "eap-ig", steps=4)
    ours = r.scores[r.graph.sender_index("embed")].sum()
    ig = layer_integrated_gradients(m, task.clean, task.metric, hook="hook_embed", baseline=task.corrupt,
                                    steps=4, method="riemann_left", fast=False)
    # ig.py accumulates its gradients in float32
    # ig.py accumulates in float32: 84 eps32
    torch.testing.assert_close(ours.double(), -ig.attributions.sum().double() / task.n, rtol=1e-5, atol=1e-12)


def test_eap_ig_end_points():
    """EAP-IG with m = 1 takes the gradient at the corrupted input: -EAP of the swapped task;
    clean-corrupted averages the two ends."""
    m = model_for("tiny-gpt2")
    task = task_for(m)
    swapped = dataclasses.replace(task, clean=task.corrupt, corrupt=task.clean,
                                  prompts=task.corrupt_prompts, corrupt_prompts=task.prompts)
    ig1 = edge_attribution(m, task, "eap-ig", steps=1).scores
    eap = edge_attribution(m, task, "eap").scores
    eap_swapped = edge_attribution(m, swapped, "eap").scores
    torch.testing.assert_close(ig1, -eap_swapped, rtol=1e-8, atol=1e-12)  # float64, exact identity up to rounding
    cc = edge_attribution(m, task, "clean-corrupted").scores
    torch.testing.assert_close(cc, (eap + ig1) / 2, rtol=1e-8, atol=1e-12)  # float64, exact identity up to rounding


# ---------------------------------------------------------------------------------- fast paths
@pytest.mark.parametrize("method", ["eap", "eap-ig", "eap-ig-activations"])
def test_fast_receiver_gradients_match_reference(method, fast):
    """Post-hoc per-head gradients (W_Q and ln1's Jacobian) == an identity node per head inside the forward
    (the ``fast`` fixture's switch picks one path, the other is asked for)."""
    m = model_for("gqa-llama")
    task = task_for(m)
    got = edge_attribution(m, task, method, steps=3, max_tokens=task.clean.numel())  # also step-chunked
    other = edge_attribution(m, task, method, steps=3, fast=not fast)
    assert got.config["fast"] is fast and other.config["fast"] is not fast
    a, b = (got, other) if fast else (other, got)
    torch.testing.assert_close(a.scores, b.scores, rtol=1e-6, atol=1e-9 * float(a.scores.abs().max()))


@pytest.mark.parametrize("share", ["own", "all"])
@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-pythia", "gqa-llama"])
def test_ig_activations_prefix_replay_matches_reference(name, share, fast):
    """EAP-IG-activations with the blocks before each sender group replayed (fast) == every block
    recomputed for every copy (reference), on sequential, parallel (Pythia) and grouped-query blocks;
    the scores that are exactly 0 in the reference stay exactly 0."""
    m = model_for(name)
    task = task_for(m)
    kw = dict(steps=3, share=share, max_tokens=2 * task.clean.numel())  # step batches of 2 and 1 copies
    got = edge_attribution(m, task, "eap-ig-activations", **kw)
    other = edge_attribution(m, task, "eap-ig-activations", fast=not fast, **kw)
    assert got.config["fast"] is fast and other.config["fast"] is not fast
    a, b = (got, other) if fast else (other, got)
    assert a.config["prefix_replay"] == {"own": "cached", "all": "batch"}[share]
    assert b.config["prefix_replay"] is False
    assert (a.scores[b.scores == 0] == 0).all()
    assert (b.scores != 0).sum() > 0.5 * b.graph.n_edges
    # float64 fast vs reference
    torch.testing.assert_close(a.scores, b.scores, rtol=1e-6, atol=1e-9 * float(b.scores.abs().max()))


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-pythia", "gqa-llama"])
def test_prefix_replay_receiver_gradients(name):
    """receiver_grads for a group in block L: the cached (detached) replay gives 0 at the receivers of blocks
    < L (nonzero in the reference: their write reaches the metric around the group) and the reference
    gradient at every other receiver; the batch-B replay with autograd gives the reference gradient everywhere."""
    from interp.attribution.edges import GradPath, receiver_grads
    from interp.attribution.fastpath import PrefixCache

    m = model_for(name)
    task = task_for(m)
    w = layer_weights(m)
    g = edge_graph(m, w)
    B = task.n
    L = m.cfg.n_layers - 1
    hooks = [f"blocks.{L}.attn.hook_z", f"blocks.{L}.hook_mlp_out"]
    raw = {}
    prefix = PrefixCache(m)
    with prefix.capture(slice(0, B)), torch.no_grad(), scoped_hooks(
            m, fwd=[(h, lambda x, hook, h=h: raw.__setitem__(h, x.detach())) for h in hooks]):
        m(torch.cat([task.clean, task.corrupt]))
    prefix.outs = {l: o.detach().requires_grad_(True) if isinstance(o, torch.Tensor) else
                   tuple(v.detach().requires_grad_(True) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                         for v in o) for l, o in prefix.outs.items()}
    alphas = torch.tensor([0.5, 1.0], dtype=torch.float64)
    wts = torch.tensor([0.5, 0.5], dtype=torch.float64)
    upstream = torch.tensor([r.layer < L for r in g.receivers])
    own_qkv = torch.tensor([r.layer == L and r.kind in "qkv" for r in g.receivers])
    for h in hooks:
        args = (m, task.clean, task.metric, g, w)
        ref, cached, batch = (receiver_grads(*args, GradPath(alphas, wts, raw[h][:B], raw[h][B:], at=h, **kw), True)[0]
                              for kw in ({}, {"prefix": prefix}, {"prefix_grad": True}))
        assert ref[upstream].abs().amax(dim=(1, 2, 3)).min() > 0
        assert (cached[upstream] == 0).all()
        # Llama's RMSNorm computes in float32: the batch replay sums the copies before the prefix backward
        # float64 models: 1e-9 of the largest score ~ 5e6 eps64; gqa-llama's RMSNorm runs in float32: 3e-8 ~ eps32 / 4
        tol = dict(rtol=1e-7, atol=(3e-8 if name == "gqa-llama" else 1e-9) * float(ref.abs().max()))
        torch.testing.assert_close(cached[~upstream], ref[~upstream], **tol)
        torch.testing.assert_close(batch, ref, **tol)  # the same tol
        if h.endswith("hook_z"):  # the heads' output is fixed: their own q/k/v get no gradient
            assert (ref[own_qkv] == 0).all() and (cached[own_qkv] == 0).all() and (batch[own_qkv] == 0).all()
        else:
            assert ref[own_qkv].abs().max() > 0


def test_fast_edge_patching_matches_reference(fast):
    """Prefix replay + last-position logits == the plain forward."""
    m = model_for("tiny-pythia")
    task = task_for(m)
    g = edge_graph(m)
    edges = sample_edges(g, per_kind=3)
    got = edge_patching(m, task, edges, max_tokens=4 * task.clean.numel())
    other = edge_patching(m, task, edges, fast=not fast, max_tokens=4 * task.clean.numel())
    assert got.config["fast"] is fast and other.config["fast"] is not fast
    a, b = (got, other) if fast else (other, got)
    assert a.effects.abs().max() > 0
    torch.testing.assert_close(a.effects, b.effects, rtol=1e-9, atol=1e-12)  # float64 fast vs reference


# ---------------------------------------------------------------------------------- hygiene and errors
def _hook_count(m):
    return sum(len(hp.fwd_hooks) + len(hp.bwd_hooks) for hp in m.hook_dict.values())


def test_hooks_removed_and_model_unchanged():
    m = model_for("tiny-gpt2")
    task = task_for(m)
    with torch.no_grad():
        before = m(task.clean)
    n0 = _hook_count(m)
    edge_attribution(m, task, "eap-ig", steps=2)
    edge_attribution(m, task, "eap", fast=False)
    for share in ("own", "all"):  # prefix replay; "all" stops a forward after the prefix blocks
        edge_attribution(m, task, "eap-ig-activations", steps=2, share=share)
    edge_patching(m, task, ["embed->logits", "L0H1->MLP1"])
    assert _hook_count(m) == n0
    assert not any(p.requires_grad for p in m.parameters())
    assert all("forward" not in b.__dict__ for b in m.blocks)  # prefix replay restored
    with torch.no_grad():
        torch.testing.assert_close(m(task.clean), before, rtol=0, atol=0)  # exact: hooks removed


def test_bad_input_errors():
    m = model_for("tiny-gpt2")
    task = task_for(m)
    with pytest.raises(ValueError, match="unknown edge attribution method"):
        edge_attribution(m, task, "acdc")
    with pytest.raises(ValueError, match="steps >= 1"):
        edge_attribution(m, task, "eap-ig", steps=0)
    with pytest.raises(ValueError, match="steps >= 1"):
        edge_attribution(m, task, "eap-ig-activations", steps=0)
    with pytest.raises(ValueError, match="unknown share"):
        edge_attribution(m, task, "eap-ig-activations", share="some")
    bad = dataclasses.replace(task)
    bad.corrupt = task.corrupt[:, :-1]  # bypasses Task's own check: ours must catch it
    with pytest.raises(ValueError, match="equal lengths"):
        edge_attribution(m, bad, "eap")
    with pytest.raises(ValueError, match="equal lengths"):
        edge_patching(m, bad, ["embed->logits"])
    with pytest.raises(ValueError, match="unknown receiver 'L0H9.q'"):
        edge_patching(m, task, [("embed", "L0H9.q")])
    with pytest.raises(ValueError, match="unknown sender"):
        edge_patching(m, task, ["MLP7->logits"])
    with pytest.raises(ValueError, match="is not an edge"):
        edge_patching(m, task, ["L1H0->L0H0.q"])
    g = edge_graph(m)
    g.receivers[0] = dataclasses.replace(g.receivers[0], kind="attn")
    with pytest.raises(KeyError, match="attn"):  # a receiver kind the graph never makes
        receiver_input_hooks(m, g, {0: (None, torch.zeros(1))}, 1)


def test_post_norm_architecture_is_refused():
    m = load_model("tiny-gemma3", device="cpu")
    with pytest.raises(ValueError, match="post-norms"):
        edge_graph(m)


# ---------------------------------------------------------------------------------- CLI
def test_cli_writes_results_and_report(tmp_path, capsys):
    import json

    from interp.cli.main import main

    out = tmp_path / "edges"
    rc = main(["edges", "ioi", "--model", "tiny-gpt2", "--method", "eap", "--n", "2", "--top", "4", "--check", "4",
               "--out", str(out), "--json"])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    res = json.loads((out / "results.json").read_text())
    assert res["kind"] == "edges" and res["config"]["method"] == "eap"
    assert (out / "report.html").stat().st_size > 1000
    top = res["top_edges"]
    assert len(top) == 4 and payload["top_edges"] == top
    assert [abs(e["score"]) for e in top] == sorted((abs(e["score"]) for e in top), reverse=True)
    # every listed edge carries its real patched effect, and the stage matrix holds every |score|
    m = load_model("tiny-gpt2", device="cpu")
    task = ioi_task(m, n=2, seed=0)
    p = edge_patching(m, task, [e["edge"] for e in top])
    # an effect is a difference of two float32 metrics, each within _metric_rounding_bound of another summation order
    assert [e["patch"] for e in top] == pytest.approx(p.effects.tolist(), abs=2 * _metric_rounding_bound(m, task))
    z = torch.tensor(res["stages"]["z"])
    # z is float32: its rounding (~eps32 x sum z) is far below the other 21 cells' share
    assert z.shape == (5, 5) and float(z.sum()) >= sum(abs(e["score"]) for e in top) - 1e-9


def test_cli_bad_input(capsys):
    from interp.cli.main import main

    assert main(["edges", "ioi", "--model", "tiny-gpt2", "--n", "0"]) == 2
    assert "n must be >= 1" in capsys.readouterr().err
    assert main(["edges", "ioi", "--model", "tiny-gpt2", "--circuit", "10,x"]) == 2
    assert "--circuit expects a comma-separated" in capsys.readouterr().err
    assert main(["edges", "ioi", "--model", "tiny-gpt2", "--compare", "eap"]) == 2
    assert "compare needs circuit sizes" in capsys.readouterr().err
    assert main(["edges", "ioi", "--model", "tiny-gpt2", "--circuit", "5", "--compare", "magic"]) == 2
    assert "--compare: unknown" in capsys.readouterr().err


def _metric_rounding_bound(m, task) -> float:
    """Worst-case float32 change of the IOI logit difference when the same forward is summed in another order.

    Each logit at the last position is the length-d_model sum h . W_U[:, t] (+ b_U).  Any summation order of a
    length-n float32 inner product lies within n * eps * sum_i |h_i W_U[i, t]| of the exact value (Higham,
    "Accuracy and Stability of Numerical Algorithms", 2nd ed., section 3.1, gamma_n), so two orders differ by at
    most twice that; the metric is the difference of two such logits, averaged over prompts.  The rounding that h
    itself carries from upstream is of the same relative order and left to the slack of this worst-case bound
    (tiny-gpt2 IOI: the metric moved by 1/370 of the bound).
    """
    with torch.no_grad():
        _, cache = m.run_with_cache(task.clean, names_filter=lambda n: n == "ln_final.hook_normalized")
    h = cache["ln_final.hook_normalized"][:, -1].double()
    W = m.W_U.double()
    io, s = task.answers[:, 0], task.answers[:, 1]
    terms = (h * W[:, io].T).abs().sum(-1) + (h * W[:, s].T).abs().sum(-1)
    return 2 * m.cfg.d_model * torch.finfo(torch.float32).eps * float(terms.mean())


def test_cli_circuit_curve_is_the_python_api(tmp_path, capsys):
    """``--circuit`` writes the curve of faithfulness_curve() on the same scores; the report shows it."""
    import json

    from interp.circuits import faithfulness_curve
    from interp.cli.main import main

    out = tmp_path / "c"
    rc = main(["edges", "ioi", "--model", "tiny-gpt2", "--method", "eap", "--n", "2", "--circuit", "5,20,1000",
               "--compare", "eap-ig", "--ig-steps", "2", "--greedy", "--out", str(out), "--json"])
    assert rc == 0
    capsys.readouterr()
    res = json.loads((out / "results.json").read_text())
    assert res["kind"] == "edges"
    fc = res["curve"]
    m = load_model("tiny-gpt2", device="cpu")
    task = ioi_task(m, n=2, seed=0)
    sc = [edge_attribution(m, task, "eap"), edge_attribution(m, task, "eap-ig", steps=2)]
    n_all = sc[0].graph.n_edges
    assert fc["sizes"] == [5, 20, n_all]
    want = faithfulness_curve(m, task, sc, [5, 20, n_all])
    # The CLI, the API and the clean run are the same float32 forwards in other batch layouts (another number of
    # stacked circuit copies), so F_norm = (m(C) - m(x~)) / (m(x) - m(x~)) moves by rounding only: at most
    # _metric_rounding_bound over the span, 4.4e-3 here (the random model's span is 1.3e-3; seen: 1.2e-5,
    # one float32 ulp of m ~ 0.16, on an Intel Xeon).  The exact identities are checked in float64 in
    # test_edge_circuit.py.
    tol = _metric_rounding_bound(m, task) / abs(want.metric_clean - want.metric_corrupt)
    for mth in ("eap", "eap-ig"):
        assert fc["curves"][mth]["n_edges"] == want.curves[mth]["n_edges"]
        assert fc["curves"][mth]["f_norm"] == pytest.approx(want.curves[mth]["f_norm"], abs=tol)
        assert fc["curves"][mth]["f_norm"][-1] == pytest.approx(1.0, abs=tol)
    assert set(fc["curves"]) == {"eap", "eap-ig", "eap greedy", "eap-ig greedy"}
    html = (out / "report.html").read_text()
    assert "Faithfulness of top-n edge circuits" in html and "Faithfulness per circuit" in html


# ---------------------------------------------------------------------------------- the real model
@pytest.mark.slow
def test_smollm2_edges_against_definitions(smollm2):
    """SmolLM2-135M (grouped-query, 30 layers), 2 IOI prompts: residual decomposition, EAP as the derivative of
    edge patching on a sample of every receiver kind, fast == reference gradients."""
    m = smollm2
    task = ioi_task(m, n=2, seed=0)
    w = layer_weights(m)
    g = edge_graph(m, w)
    assert (len(g.senders), len(g.receivers), g.n_edges) == (301, 481, 70651)
    box = {}
    with scoped_hooks(m, fwd=[("ln_final.hook_in", lambda x, hook: box.update(r=x))]):
        Z, _ = sender_outputs(m, task.clean, g, w)
    # SmolLM2 in float32: 301 sender outputs summed in another order than the residual stream, through 30 layers:
    # eps32 x 301 terms x 30 layers ~ 1e-3 of the largest |r|
    torch.testing.assert_close(Z.sum(0), box["r"], rtol=1e-4, atol=1e-3 * float(box["r"].abs().max()))
    r = edge_attribution(m, task, "eap")
    edges = sample_edges(g, per_kind=2) + [(g.sender_index(e["sender"]), g.receiver_index(e["receiver"]))
                                           for e in r.top(6)]
    eps = 0.05  # float32 model: central differences with a moderate eps
    fd = (edge_patching(m, task, edges, eps=eps).effects - edge_patching(m, task, edges, eps=-eps).effects) / (2 * eps)
    sc = torch.tensor([float(r.scores[i, j]) for i, j in edges], dtype=torch.float64)
    # central differences at eps 0.05: the method's truncation error O(eps^2) = 2.5e-3 x the metric's curvature,
    # plus float32 rounding eps32 |m| / eps ~ 1e-6: 2% of the largest score
    assert (fd - sc).abs().max() <= 0.02 * sc.abs().max(), list(zip([g.edge_name(*e) for e in edges], sc.tolist(), fd.tolist()))
    ref = edge_attribution(m, task, "eap", fast=False)
    # float32, 30 layers, another batch layout: 840 eps32 of max
    torch.testing.assert_close(r.scores, ref.scores, rtol=1e-3, atol=1e-4 * float(ref.scores.abs().max()))


# ---------------------------------------------------------------------------------- the typed result
@report_test("edges")
def test_edge_result_from_a_real_run(tmp_path):
    """run_edges on tiny-gpt2: its circuit is the smallest measured top-n circuit with F_norm >= target, re-measured
    here with edge_circuit_faithfulness; its graph sums exactly the circuit's edge scores; its check's r is the
    one Pearson of score vs real edge patching; JSON round trip; the report renders in Chromium with declared axes.
    A circuit picked by requested n instead of edges kept, or a graph over all edges, fails here."""
    from browser import check_result_report, needs_chromium

    from interp.circuits import edge_circuit_faithfulness, top_n_circuit
    from interp.circuits.edge_circuits import EdgeResult, run_edges
    from interp.results import load_result, pearson

    m = load_model("tiny-gpt2", device="cpu", dtype=torch.float64)
    r = run_edges(m, "ioi", method="eap", n=3, top=6, check=6, sizes=(2, 5, 20, 80, 10 ** 9), target=0.5)
    task = ioi_task(m, n=3, seed=0)
    sc = edge_attribution(m, task, "eap")
    c = r.circuit
    assert c is not None and c["edges"] == top_n_circuit(sc, c["n_requested"]).edge_names()
    f = edge_circuit_faithfulness(m, task, [c["edges"]], check_ends=False).f_norm.item()
    assert f == pytest.approx(c["f_norm"], abs=1e-9) and f >= 0.5  # float64 model: the same run, re-batched
    own = r.curve["curves"]["eap"]
    assert all(fn < 0.5 or e >= c["n_edges"] for e, fn in zip(own["n_edges"], own["f_norm"]))  # the smallest
    g = edge_graph(m)
    want = sum(sc.score(*e.split("->")) for e in c["edges"])
    assert sum(e["score"] for e in r.graph) == pytest.approx(want, abs=1e-12)  # float64 sums in another order
    assert r.check["pearson"] == pytest.approx(pearson([e["score"] for e in r.top_edges], [e["patch"] for e in r.top_edges]))
    assert r.n_edges == g.n_edges and "keep" in r.summary()
    back = load_result(json.loads(json.dumps(r.to_json())))
    assert isinstance(back, EdgeResult) and back.to_json() == r.to_json()
    if needs_chromium.args[0]:
        pytest.skip(needs_chromium.kwargs["reason"])
    check_result_report(back, tmp_path)


def test_run_edges_with_greedy_circuits_only():
    """selection="greedy" measures only the greedy circuits: no top-n circuit is reported, the summary still
    names the best F_norm measured (this crashed with a KeyError before)."""
    from interp.circuits import greedy_circuit
    from interp.circuits.edge_circuits import run_edges

    m = load_model("tiny-gpt2", device="cpu")
    r = run_edges(m, "ioi", method="eap", n=2, sizes=(5,), selection="greedy", target=1.1)
    assert list(r.curve["curves"]) == ["eap greedy"] and r.circuit is None
    sc = edge_attribution(m, ioi_task(m, n=2, seed=0), "eap")
    assert r.curve["curves"]["eap greedy"]["n_edges"] == [greedy_circuit(sc, 5).n_edges]
    assert f"best F_norm {r.curve['curves']['eap greedy']['f_norm'][0]:.3f}" in r.summary()
