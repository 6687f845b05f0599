"""Edge-circuit faithfulness (interp/circuits/faithfulness.py, circuit.py) against its definition.

Ground truths: the clean and the corrupted run (all edges / no edges), real edge patching
(edge_patching.py) for the full circuit minus one edge, and an independent plain-torch GPT-2 forward
written from the Hugging Face weights in which every receiver reads the explicit sum
``sum_u [z_u(current) if (u->v) in C else z_u(x~)] + biases``.  Tiny random models in float64.
"""

from __future__ import annotations

import math

import pytest
import torch

from interp.circuits import (Circuit, as_edge_mask, edge_circuit_faithfulness, faithfulness_curve,
                                             greedy_circuit, prune_circuit, top_n_circuit)
from interp.attribution.edge_patching import edge_patching
from interp.attribution.edges import edge_attribution, edge_graph
from interp.models import load_model, scoped_hooks
from interp.models.hooks import save_hook
from interp.tasks import ioi_task

_M: dict = {}


def model_for(name):
    if name not in _M:
        if name == "gqa-llama":
            from tests.test_edges import _gqa_llama

            _M[name] = _gqa_llama()
        else:
            _M[name] = load_model(name, device="cpu", dtype=torch.float64)
    return _M[name]


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-pythia", "gqa-llama"])
def test_full_and_empty_circuits_are_the_clean_and_corrupted_runs(name):
    m = model_for(name)
    task = ioi_task(m, n=3, seed=0)
    g = edge_graph(m)
    with torch.no_grad():
        clean = task.metric(m(task.clean)).double().mean().item()
        corrupt = task.metric(m(task.corrupt)).double().mean().item()
    assert abs(clean - corrupt) > 1e-6  # the two ends differ, so the check has teeth
    f = edge_circuit_faithfulness(m, task, [g.mask, torch.zeros_like(g.mask)])
    # float64 model: the same metric computed the same way (1e-12 ~ 5e3 eps64 x |m|); circuit runs re-sum the
    # residual in another batch layout: 1e-10 ~ 5e5 eps64 x |m|, far above the 2 x d_model x eps64 re-sum bound
    assert f.metric_clean == pytest.approx(clean, abs=1e-12)
    assert f.metric_corrupt == pytest.approx(corrupt, abs=1e-12)
    assert f.metrics[0].item() == pytest.approx(clean, abs=1e-10)  # float64 circuit run: 1e-10 as above
    assert f.metrics[1].item() == pytest.approx(corrupt, abs=1e-10)  # float64 circuit run: 1e-10 as above
    assert f.f_norm.tolist() == pytest.approx([1.0, 0.0], abs=1e-8)  # 1e-10 / span (1e-3 here) with slack: float64
    # float64, as above
    assert abs(f.identity["full_minus_clean"]) < 1e-10 and abs(f.identity["empty_minus_corrupt"]) < 1e-10
    # the logits receiver matters: keeping only the edges into the logits is not the clean run
    only = torch.zeros_like(g.mask)
    only[:, g.receiver_index("logits")] = True
    f2 = edge_circuit_faithfulness(m, task, [only], check_ends=False)
    assert abs(f2.metrics[0].item() - clean) > 1e-8


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-pythia", "gqa-llama"])
def test_full_minus_one_edge_is_edge_patching(name):
    m = model_for(name)
    task = ioi_task(m, n=3, seed=0)
    g = edge_graph(m)
    picks = []
    for kind in ("q", "k", "v", "mlp", "logits"):
        j = [j for j, r in enumerate(g.receivers) if r.kind == kind][-1]
        picks.append((int(g.mask[:, j].nonzero()[0]), j))  # the embedding into the last receiver of each kind
        picks.append((int(g.mask[:, j].nonzero()[-1]), j))
    masks = []
    for i, j in picks:
        c = g.mask.clone()
        c[i, j] = False
        masks.append(c)
    f = edge_circuit_faithfulness(m, task, masks, check_ends=False)
    p = edge_patching(m, task, picks, eps=1.0, fast=False)
    # float64: circuit minus one edge == edge patching, re-summed
    torch.testing.assert_close(f.metrics - f.metric_clean, p.effects, rtol=1e-7, atol=1e-11)
    assert p.effects.abs().max() > 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_receivers_with_every_edge_in_the_circuit_run_untouched(dtype):
    """A q/k/v receiver whose every incoming edge is in C reads the current run unchanged: the circuit run of
    C = all edges but MLP0 -> logits is, per prompt and bit for bit, the clean run with one hand-written hook
    adding -(mlp_out_0(clean) - mlp_out_0(corrupt)) at ln_final's input (and all edges: the clean run).
    Exact (no tolerance): both are the same forward, same ops and shapes (one copy, full logits).  A head
    hook that recomputed W ln1(x) + b in every copy instead of only where its offset is nonzero (the wrong
    implementation tried) is the same up to rounding, but not bit for bit: it moved the second circuit's
    metric by 3e-8 (float32) and 3e-17 (float64)."""
    from tests.test_edges import with_random_biases

    m = with_random_biases("tiny-gpt2").to(dtype)
    task = ioi_task(m, n=3, seed=0)
    g = edge_graph(m)
    c = g.mask.clone()
    c[g.sender_index("MLP0"), g.receiver_index("logits")] = False
    f = edge_circuit_faithfulness(m, task, [g.mask, c], check_ends=False, fast=False)
    mlp0 = {}
    with torch.no_grad():
        for run, tokens in (("corrupt", task.corrupt), ("clean", task.clean)):
            with scoped_hooks(m, fwd=[("blocks.0.hook_mlp_out", save_hook(mlp0, run))]):
                clean = task.metric(m(tokens)).double()
        missing = mlp0["clean"] - mlp0["corrupt"]  # what the edge MLP0 -> logits carries from the clean run
        with scoped_hooks(m, fwd=[("ln_final.hook_in", lambda x, hook: x - missing)]):
            want = task.metric(m(task.clean)).double()
    assert (want - clean).abs().max() > 1e-5  # the missing edge matters
    assert torch.equal(f.per_prompt[0], clean) and torch.equal(f.per_prompt[1], want)


def test_pruning_keeps_the_metric_and_removes_dead_ends():
    m = model_for("tiny-gpt2")
    task = ioi_task(m, n=3, seed=0)
    g = edge_graph(m)
    s, r = g.sender_index, g.receiver_index
    c = as_edge_mask(g, ["embed->L0H1.v", "L0H1->MLP1", "MLP1->logits",  # a path
                         "embed->L1H2.v",  # dead end: L1H2 reaches nothing
                         "L0H3->L1H0.k",  # L0H3 is reached by nothing; L1H0 reaches nothing
                         "MLP0->logits"])  # MLP0 is reached by nothing
    p = prune_circuit(g, c)
    assert sorted(Circuit.of_edges(g, p).edge_names()) == sorted(["embed->L0H1.v", "L0H1->MLP1", "MLP1->logits"])
    assert Circuit.of_edges(g, p).components == ["embed", "L0H1", "MLP1", "logits"]
    f = edge_circuit_faithfulness(m, task, [c, p], check_ends=False)
    # float64, pruning changes nothing: ~5e3 eps64
    assert f.metrics[0].item() == pytest.approx(f.metrics[1].item(), abs=1e-12)
    assert abs(f.metrics[0].item() - f.metric_corrupt) > 1e-9  # the kept path carries clean information
    assert f.n_edges == [6, 3]
    # with the dead MLP0 fed, its edge to the logits lies on a path and stays
    c2 = c.clone()
    c2[s("embed"), r("MLP0")] = True
    assert prune_circuit(g, c2)[s("MLP0"), r("logits")]


def test_grouped_kv_receiver_makes_its_whole_group_live():
    m = model_for("gqa-llama")  # 4 query heads, 2 kv heads: L1KV0 feeds L1H0 and L1H1
    g = edge_graph(m)
    c = as_edge_mask(g, ["embed->L1KV0.v", "L1H1->logits", "L1H2->logits"])
    assert sorted(Circuit.of_edges(g, prune_circuit(g, c)).edge_names()) == ["L1H1->logits", "embed->L1KV0.v"]


def _gpt2_circuit_run(m, task, circuit):
    """Plain-torch GPT-2 from the HF weights; receiver v reads sum_u [cur or corrupt] + the b_O so far."""
    hf = m.original_model.transformer
    lm_head = m.original_model.lm_head
    H, dh, d = m.cfg.n_heads, m.cfg.d_head, m.cfg.d_model
    g = edge_graph(m)

    def run(tokens, corrupt=None):
        T = tokens.shape[1]
        z = {"embed": hf.wte(tokens), "pos_embed": hf.wpe(torch.arange(T))[None].expand(tokens.shape[0], T, d)}
        bias = torch.zeros(d, dtype=torch.float64)

        def read(recv):
            j = g.receiver_index(recv)
            tot = bias.clone()
            for u, val in z.items():
                i = g.sender_index(u)
                if not g.mask[i, j]:
                    continue
                use_cur = corrupt is None or bool(circuit[i, j])
                tot = tot + (val if use_cur else corrupt[u])
            return tot

        for l, blk in enumerate(hf.h):
            W, b = blk.attn.c_attn.weight, blk.attn.c_attn.bias  # [d, 3d]
            qkv = {}
            for n, kind in enumerate("qkv"):
                qkv[kind] = torch.stack([blk.ln_1(read(f"L{l}H{h}.{kind}")) @ W[:, n * d + h * dh:n * d + (h + 1) * dh]
                                         + b[n * d + h * dh:n * d + (h + 1) * dh] for h in range(H)], 2)
            att = torch.einsum("bqhe,bkhe->bhqk", qkv["q"], qkv["k"]) / math.sqrt(dh)
            att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
            zz = torch.einsum("bhqk,bkhe->bqhe", att, qkv["v"])
            Wo = blk.attn.c_proj.weight.reshape(H, dh, d)
            for h in range(H):
                z[f"L{l}H{h}"] = zz[:, :, h] @ Wo[h]
            bias = bias + blk.attn.c_proj.bias
            z[f"MLP{l}"] = blk.mlp(blk.ln_2(read(f"MLP{l}")))
        return lm_head(hf.ln_f(read("logits"))), z

    with torch.no_grad():
        _, zk = run(task.corrupt)
        plain, _ = run(task.clean)
        logits, _ = run(task.clean, zk)
    return task.metric(plain).double().mean().item(), task.metric(logits).double().mean().item()


def test_matches_hand_written_gpt2_circuit_run():
    from tests.test_edges import with_random_biases

    m = with_random_biases("tiny-gpt2")  # so that a q/k/v recomputed without its bias fails
    task = ioi_task(m, n=3, seed=0)
    g = edge_graph(m)
    # (the char-level prompts share their last token, so clean information must move through k or v)
    circuits = [["embed->L1H2.v", "embed->L0H0.v", "L0H0->L1H2.k", "L1H2->logits"],
                ["embed->L0H2.k", "embed->L0H2.v", "pos_embed->L0H2.v", "L0H2->MLP0", "MLP0->logits"],
                ["embed->L0H1.v", "L0H1->MLP0", "MLP0->L1H3.q", "L1H3->logits"]]
    f = edge_circuit_faithfulness(m, task, circuits, check_ends=False)
    with torch.no_grad():
        bridge = task.metric(m(task.clean)).double().mean().item()
    for c, got in zip(circuits, f.metrics.tolist()):
        plain, want = _gpt2_circuit_run(m, task, as_edge_mask(g, c))
        # float64 (1e-10 ~ 5e5 eps64 x |m|): the hand-written GPT-2 forward vs the bridge, another op order
        assert plain == pytest.approx(bridge, abs=1e-10)  # the hand-written forward is GPT-2
        assert got == pytest.approx(want, abs=1e-10), c
    assert len({round(x, 12) for x in f.metrics.tolist() + [f.metric_corrupt]}) == 4  # all differ from x~


def test_top_n_and_curve():
    m = model_for("tiny-pythia")
    task = ioi_task(m, n=3, seed=0)
    eap = edge_attribution(m, task, "eap")
    ig = edge_attribution(m, task, "eap-ig", steps=3)
    raw = top_n_circuit(eap, 7, prune=False)
    assert raw.n_edges == 7
    a = eap.scores.abs()[raw.edges]
    assert a.min() >= eap.scores.abs().masked_fill(raw.edges | ~eap.graph.mask, 0).max()
    n_all = eap.graph.n_edges
    cur = faithfulness_curve(m, task, [eap, ig], [0, 5, n_all])
    for meth in ("eap", "eap-ig"):
        c = cur.curves[meth]
        assert c["n_edges"][0] == 0 and c["n_edges"][2] == n_all
        # float64 ends, as in test_full_and_empty_circuits
        assert c["f_norm"][0] == pytest.approx(0.0, abs=1e-8) and c["f_norm"][2] == pytest.approx(1.0, abs=1e-8)
        assert c["n_edges"][1] <= 5
    # the curve's middle point is the circuit run of the same circuit
    f = edge_circuit_faithfulness(m, task, [top_n_circuit(ig, 5)], check_ends=False)
    assert cur.curves["eap-ig"]["metric"][1] == pytest.approx(f.metrics[0].item(), abs=1e-10)  # float64


def test_reference_switch(fast):
    """The switch (INTERP_REFERENCE, the ``fast`` fixture) turns the last-position logits off in the circuit
    runs (as in edges.py), the faithfulness curve included; the full logits give the same metric and F_norm."""
    m = model_for("tiny-gpt2")
    task = ioi_task(m, n=3, seed=0)
    eap = edge_attribution(m, task, "eap", fast=True)
    circuits = [top_n_circuit(eap, n) for n in (3, 12)]
    got = edge_circuit_faithfulness(m, task, circuits)
    cur_got = faithfulness_curve(m, task, [eap], [3, 12])
    assert got.config["fast"] is fast and got.config["last_position_only"] is fast
    assert cur_got.config["last_position_only"] is fast
    other = edge_circuit_faithfulness(m, task, circuits, fast=not fast)  # explicit wins over the switch
    cur_other = faithfulness_curve(m, task, [eap], [3, 12], fast=not fast)
    assert other.config["last_position_only"] is not fast and cur_other.config["last_position_only"] is not fast
    (f, ref), (cur_f, cur_ref) = ((got, other), (cur_got, cur_other)) if fast else ((other, got), (cur_other, cur_got))
    assert (f.f_norm - 1).abs().max() > 1e-3  # not the trivial full circuit
    # float64: fast (last-position unembed) vs reference, the same sums in another batch layout: 1e-9 relative ~ 5e6
    # eps64
    torch.testing.assert_close(ref.f_norm, f.f_norm, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ref.metrics, f.metrics, rtol=1e-9, atol=1e-12)
    # float64, as above
    assert cur_ref.curves["eap"]["f_norm"] == pytest.approx(cur_f.curves["eap"]["f_norm"], rel=1e-9, abs=1e-12)


def test_bad_input():
    m = model_for("tiny-gpt2")
    task = ioi_task(m, n=2, seed=0)
    g = edge_graph(m)
    with pytest.raises(ValueError, match="not an edge"):
        edge_circuit_faithfulness(m, task, [["L1H0->L0H0.q"]])
    with pytest.raises(ValueError, match="bool"):
        edge_circuit_faithfulness(m, task, [g.mask.float()])
    with pytest.raises(ValueError, match="sequence of circuits"):
        edge_circuit_faithfulness(m, task, g.mask)
    with pytest.raises(ValueError, match="out of range"):
        faithfulness_curve(m, task, [edge_attribution(m, task, "eap")], [g.n_edges + 1])
    with pytest.raises(ValueError, match="must lie in"):
        top_n_circuit(edge_attribution(m, task, "eap"), -1)


def test_hooks_removed():
    m = model_for("tiny-gpt2")
    task = ioi_task(m, n=2, seed=0)
    n0 = sum(len(h.fwd_hooks) for h in m.hook_dict.values()) if hasattr(next(iter(m.hook_dict.values())), "fwd_hooks") else None
    with torch.no_grad():
        before = m(task.clean)
    with pytest.raises(ValueError):
        edge_circuit_faithfulness(m, task, [["embed->logits"], ["L1H0->L0H0.q"]])
    edge_circuit_faithfulness(m, task, [["embed->logits"]])
    with torch.no_grad():
        torch.testing.assert_close(m(task.clean), before, rtol=0, atol=0)  # exact: hooks removed
    if n0 is not None:
        assert sum(len(h.fwd_hooks) for h in m.hook_dict.values()) == n0


def test_greedy_grows_from_the_logits():
    """Hand-set scores: top-n takes the two largest edges; greedy first needs an edge into the logits."""
    m = model_for("tiny-gpt2")
    task = ioi_task(m, n=2, seed=0)
    sc = edge_attribution(m, task, "eap")
    g = sc.graph
    sc.scores = torch.zeros_like(sc.scores)
    val = {"embed->L1H2.q": 10.0, "L0H0->L1H3.v": -9.0, "L1H2->logits": 5.0, "MLP1->logits": -4.0}
    for e, v in val.items():
        (i, j), = g.resolve([e])
        sc.scores[i, j] = v
    assert sorted(top_n_circuit(sc, 2, prune=False).edge_names()) == ["L0H0->L1H3.v", "embed->L1H2.q"]
    assert greedy_circuit(sc, 1, prune=False).edge_names() == ["L1H2->logits"]
    assert sorted(greedy_circuit(sc, 2, prune=False).edge_names()) == ["L1H2->logits", "embed->L1H2.q"]
    assert sorted(greedy_circuit(sc, 3, prune=False).edge_names()) == ["L1H2->logits", "MLP1->logits",
                                                                        "embed->L1H2.q"]
    # MLP1 is reached by nothing: pruning drops its edge
    assert sorted(greedy_circuit(sc, 3).edge_names()) == ["L1H2->logits", "embed->L1H2.q"]
    # every edge of an unpruned greedy circuit leads to the logits (backward pruning keeps them all)
    real = edge_attribution(m, task, "eap")
    c = greedy_circuit(real, 40, prune=False)
    assert c.n_edges == 40
    fwd_all = c.edges.clone()
    fwd_all[0] = fwd_all[0] | g.mask[0]  # feed every receiver from the embedding: all nodes forward-live
    assert (prune_circuit(g, fwd_all) & c.edges).sum() == 40
    with pytest.raises(ValueError, match="must lie in"):
        greedy_circuit(real, g.n_edges + 1)


@pytest.mark.slow
def test_smollm2_circuit_identities(smollm2):
    """SmolLM2-135M (grouped-query, float32), 2 IOI prompts: full / empty circuits == clean / corrupted runs,
    full minus one edge == edge patching, pruning leaves the metric unchanged."""
    m = smollm2
    task = ioi_task(m, n=2, seed=0)
    sc = edge_attribution(m, task, "eap")
    g = sc.graph
    top = [g.resolve([e["edge"]])[0] for e in sc.top(3)]
    masks = []
    for i, j in top:
        c = g.mask.clone()
        c[i, j] = False
        masks.append(c)
    raw = top_n_circuit(sc, 200, prune=False)
    f = edge_circuit_faithfulness(m, task, masks + [raw, top_n_circuit(sc, 200)])
    span = abs(f.metric_clean - f.metric_corrupt)
    # SmolLM2 in float32, 30 layers re-summed in stacked copies: 1e-6 of the metric seen (module docstring);
    # 1e-4 of the span (span ~1-3 logits) leaves ~100x
    assert abs(f.identity["full_minus_clean"]) < 1e-4 * span and abs(f.identity["empty_minus_corrupt"]) < 1e-4 * span
    p = edge_patching(m, task, top)
    # float32 SmolLM2: circuit effects vs edge patching, each a difference of two 30-layer forwards: 1e-4 of the span
    torch.testing.assert_close(f.metrics[:3] - f.metric_clean, p.effects, rtol=1e-3, atol=1e-4 * span)
    assert abs(f.metrics[3].item() - f.metrics[4].item()) < 1e-4 * span  # pruning changes nothing: float32 rounding
