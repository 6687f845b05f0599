"""Discrete-SAE circuit identification (O'Neill & Bui 2024): scores against hand counts, the reference's loop
definition of the edge count, planted heads, and the evaluation metrics against hand-computed values."""

import functools
import json
import math

import pytest
from browser import report_test
import torch

from interp.circuits import sae_circuits as sc
from interp.models import scoped_hooks


def test_node_counts_hand_computed():
    pos = torch.tensor([[1, 2, 3, 4], [6, 5, 3, 4], [8, 2, 3, 4]])
    neg = torch.tensor([[1, 2, 3, 9], [1, 2, 7, 4]])
    # head0 {1,6,8}-{1} = 2; head1 {2,5}-{2} = 1; head2 {3}-{3,7} = 0; head3 {4}-{9,4} = 0
    assert sc.node_counts(pos, neg).tolist() == [2, 1, 0, 0]
    with pytest.raises(ValueError, match="equal n_heads"):
        sc.node_counts(pos, neg[:, :3])


def test_edge_counts_and_votes_hand_computed():
    pos, neg = torch.tensor([[0, 1, 2]]), torch.tensor([[0, 1, 3]])
    # only the pairs with head 2 differ: (0,2), (1,2) and their transposes carry one unique code pair each
    counts = sc.edge_counts(pos, neg, n_codes=4)
    assert counts.tolist() == [[0, 0, 1], [0, 0, 1], [1, 1, 0]]
    # pairs by count (stable): (0,2), (1,2), (2,0), (2,1), ...; the first 4 unrolled entries are 0, 2, 1, 2
    assert sc.edge_votes(counts, k=4).tolist() == [1, 1, 2]


def test_edge_counts_equal_the_reference_loop():
    """The reference's definition: 4-D co-occurrence counts M+/M-, score = #{(c1,c2): M+ > 0, M- = 0}."""
    g = torch.Generator().manual_seed(0)
    n_heads, n_codes = 5, 4
    pos = torch.randint(0, n_codes, (6, n_heads), generator=g)
    neg = torch.randint(0, n_codes, (7, n_heads), generator=g)

    def cooc(codes):
        m = torch.zeros(n_heads, n_heads, n_codes, n_codes)
        for e in range(codes.shape[0]):
            for h1 in range(n_heads):
                for h2 in range(n_heads):
                    if h1 != h2:
                        m[h1, h2, codes[e, h1], codes[e, h2]] += 1
        return m

    want = ((cooc(pos) > 0) & ~(cooc(neg) > 0)).sum((2, 3))
    assert torch.equal(sc.edge_counts(pos, neg, n_codes), want)


def _clusters(g, k, d, scale=6.0):
    return torch.nn.functional.normalize(torch.randn(k, d, generator=g), dim=-1) * scale


def test_planted_head_gets_the_top_node_and_edge_score():
    """Every head draws its output from the same clusters on positive and negative prompts, except one head
    whose positive outputs come from clusters of their own: it alone gets codes unique to positives."""
    g = torch.Generator().manual_seed(1)
    n, L, H, d, K = 16, 2, 3, 24, 4
    shared = [[_clusters(g, K, d) for _ in range(H)] for _ in range(L)]
    planted = (1, 2)
    own = _clusters(g, K, d)

    def outputs(positive):
        x = torch.zeros(n, L, H, d)
        for e in range(n):
            for l in range(L):
                for h in range(H):
                    src = own if positive and (l, h) == planted else shared[l][h]
                    x[e, l, h] = src[e % K] + 0.05 * torch.randn(d, generator=g)
        return x

    # edge_k = 10 entries = 5 head pairs: every pair with the planted head (with the reference's k = 4 the
    # planted head ties with its best partner, as any pair-vote must)
    cfg = sc.SAECircuitConfig(n_latents=40, epochs=300, n_train=16, seed=0, edge_k=10)
    r = sc.scores_from_outputs(outputs(True), outputs(False), cfg)
    flat = r.unique_codes.flatten()
    top = planted[0] * H + planted[1]
    assert int(flat.argmax()) == top and flat[top] > flat[torch.arange(L * H) != top].max()
    votes = r.edge_votes.flatten()
    assert votes[top] == 5 and votes[torch.arange(L * H) != top].max() < 5  # in every one of the top 5 pairs
    # approx default rel 1e-6: a normalised float sum of L*H terms
    assert r.node_scores.sum().item() == pytest.approx(1.0)
    truth = torch.zeros(L, H, dtype=torch.bool)
    truth[planted] = True
    assert sc.evaluate_scores(r.node_scores, truth)["roc_auc"] == 1.0


def test_head_outputs_sum_to_attention_output(tiny_llama):
    """Sum over heads of the per-head residual writes (mean over positions) = mean of hook_attn_out."""
    model = tiny_llama
    toks = torch.randint(4, 99, (3, 9), generator=torch.Generator().manual_seed(2))
    toks[:, 0] = 0
    out = sc.head_outputs(model, toks, batch_size=2)
    _, cache = model.run_with_cache(toks, names_filter=lambda n: n.endswith("hook_attn_out"))
    for l in range(model.cfg.n_layers):
        want = cache[f"blocks.{l}.hook_attn_out"].mean(1)
        # float32 per-head split summed back over heads: 1e-4 = 840 eps32 relative
        torch.testing.assert_close(out[:, l].sum(1), want, atol=1e-5, rtol=1e-4)


def test_planted_head_on_a_tiny_model(tiny_llama):
    """On a real forward pass where only head 1.2 writes anything (the others' z zeroed on every prompt),
    lower-case positive prompts vs upper-case negatives: head 1.2 is the only head with unique codes."""
    model = tiny_llama
    g = torch.Generator().manual_seed(3)

    def prompts(lo, hi):
        t = torch.randint(lo, hi, (10, 12), generator=g)
        t[:, 0] = 0
        return t

    # char tokenizer: ids 4.. are printable ASCII from ' '; 'a'..'z' = 69..94, 'A'..'Z' = 37..62
    task = type("T", (), {"clean": prompts(69, 95), "corrupt": prompts(37, 63)})()

    def keep_only_head_2(z, hook, layer):
        if layer == 1:
            z = z.clone()
            z[:, :, [0, 1, 3]] = 0
            return z
        return torch.zeros_like(z)

    fwd = [(f"blocks.{l}.attn.hook_z", functools.partial(keep_only_head_2, layer=l)) for l in range(model.cfg.n_layers)]
    with scoped_hooks(model, fwd=fwd):
        r = sc.sae_circuit(model, task, n_latents=50, epochs=300, n_train=10, seed=0)
    flat = r.unique_codes.flatten()
    assert flat[1 * 4 + 2] > 0
    assert flat[torch.arange(8) != 6].sum() == 0
    assert r.seconds["total"] >= r.seconds["train"] > 0


def test_ground_truth_and_metrics_hand_computed():
    eff = torch.tensor([[3.0, -1.0], [0.5, 0.0]])
    assert sc.ground_truth_heads(eff, 0.5).tolist() == [[True, False], [False, False]]  # 3 >= 0.5 * 4.5
    assert sc.ground_truth_heads(eff, 0.8).tolist() == [[True, True], [False, False]]  # 4 >= 3.6
    assert sc.ground_truth_heads(eff, 1.0).tolist() == [[True, True], [True, False]]
    with pytest.raises(ValueError, match="share"):
        sc.ground_truth_heads(eff, 0.0)
    # AUC: pairs (pos, neg) ordered correctly: (.9>.8), (.9>.1), (.3>.1) of 4 -> 0.75
    # F1 by threshold: .9 -> 2/3, .8 -> 1/2, .3 -> 0.8 (P 2/3, R 1), .1 -> 2/3
    m = sc.evaluate_scores(torch.tensor([0.9, 0.8, 0.3, 0.1]), torch.tensor([True, False, True, False]))
    assert m["roc_auc"] == pytest.approx(0.75)  # approx default: a ratio of small integers
    assert m["best_f1"] == pytest.approx(0.8)  # approx default: a ratio of small integers
    with pytest.raises(ValueError, match="both"):
        sc.evaluate_scores(torch.ones(3), torch.zeros(3, dtype=torch.bool))


def test_softmax_scores_and_config_errors():
    r = sc.scores_from_outputs(torch.randn(4, 1, 2, 6), torch.randn(4, 1, 2, 6),
                               sc.SAECircuitConfig(n_latents=5, epochs=3, n_train=2))
    u = r.unique_codes.flatten().double()
    # float64 softmax vs its definition: assert_close float64 defaults (rtol 1e-7)
    torch.testing.assert_close(r.node_scores.flatten(), u.exp() / u.exp().sum())
    with pytest.raises(ValueError, match="n_latents"):
        sc.SAECircuitConfig(n_latents=1)
    with pytest.raises(ValueError, match="head outputs"):
        sc.scores_from_outputs(torch.randn(4, 2, 6), torch.randn(4, 2, 6), sc.SAECircuitConfig())
    assert not math.isnan(r.sae_loss)


def test_cli_sae_circuit(tmp_path, capsys):
    import json

    from interp.cli.main import main

    rc = main(["sae-circuit", "ioi", "--model", "tiny-llama", "--n", "4", "--epochs", "20", "--d-sae", "16",
               "--n-train", "4", "--truth-n", "4", "--top", "3", "--json", "--out", str(tmp_path)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["top"]) == 3 and set(out["evaluation"]) == {"0.5", "0.8"}
    assert 0 <= out["evaluation"]["0.8"]["node"]["roc_auc"] <= 1 and out["seconds"]["patching"] > 0
    from interp.results import load_result

    saved = load_result(tmp_path / "results.json")
    assert saved.kind == "sae_circuit" and saved.unique_codes.shape == (2, 4)  # [L, H] for the 2-layer tiny model
    assert saved.top_heads(3) == out["top"] and (tmp_path / "report.html").stat().st_size > 1000


@report_test("sae_circuit")
def test_sae_circuit_result_from_a_real_run(tiny_llama, tmp_path):
    """run_sae_circuit with a patching truth on tiny-llama: its evaluation is evaluate_scores against
    ground_truth_heads of activation patching run here (a truth taken from the wrong direction or the wrong
    share fails), the top heads are the argmax of unique codes, JSON round trip, and the report renders."""
    from browser import check_result_report, needs_chromium

    from interp.attribution import activation_patching
    from interp.results import load_result
    from interp.tasks import make_task

    r = sc.run_sae_circuit(tiny_llama, "ioi", sc.SAECircuitConfig(n_latents=32, epochs=200, n_train=8), n=6, truth_n=6,
                           shares=(0.5, 0.8))
    ap = activation_patching(tiny_llama, make_task("ioi", tiny_llama, n=6, seed=0), components=("attn_head",))
    assert torch.equal(r.patching, ap.scores["attn_head"])
    for s in (0.5, 0.8):
        truth = sc.ground_truth_heads(ap.scores["attn_head"], s)
        assert r.evaluation[str(s)] == {"n_truth": int(truth.sum()), "node": sc.evaluate_scores(r.node_scores, truth),
                                        "edge": sc.evaluate_scores(r.edge_scores, truth)}
    H = tiny_llama.cfg.n_heads
    assert r.unique_codes.max() > 0  # some head has a code unique to the positives: the ranking below has teeth
    best = int(r.unique_codes.flatten().argmax())
    assert r.top_heads(1)[0]["head"] == f"L{best // H}H{best % H}" and r.top_heads(1)[0]["head"] in r.summary()
    back = load_result(json.loads(json.dumps(r.to_json())))
    assert isinstance(back, sc.SAECircuitResult) and back.to_json() == r.to_json()
    if needs_chromium.args[0]:
        pytest.skip(needs_chromium.kwargs["reason"])
    check_result_report(back, tmp_path)
