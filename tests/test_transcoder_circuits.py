"""Feature circuits: the direct-path decomposition is complete against the real forward pass, and every hop's
continuation vector reproduces the contribution it continues (with the norm scales frozen, as defined)."""

import pytest
import torch

from interp.circuits import feature_circuits as fc
from interp.dictionaries import make
from interp.dictionaries.transcoder import transcoder_config


@pytest.fixture(scope="module")
def setup():
    from interp.models import load_model

    model = load_model("tiny-llama-l3", device="cpu")
    d = model.cfg.d_model
    torch.manual_seed(0)
    tcs = {l: make(transcoder_config(l, d_model=d, expansion=2, arch="relu")) for l in range(3)}
    with torch.no_grad():
        for tc in tcs.values():
            tc.b_enc.fill_(0.05)
    toks = torch.randint(1, 99, (7,), generator=torch.Generator().manual_seed(1))
    toks[0] = 0
    return model, tcs, fc.run_cache(model, toks)


@pytest.mark.parametrize("layer,where", [(2, "mid"), (2, "pre"), (1, "mid"), (0, "pre")])
def test_decomposition_is_complete(setup, layer, where):
    model, tcs, cc = setup
    u = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(layer))
    terms = fc.decompose(model, tcs, cc, u, layer, where, position=5)
    actual = float(cc.cache[f"blocks.{layer}.hook_resid_{where}"][5] @ u)
    scale = sum(abs(c.value) for c in terms)  # float32 sums of cancelling terms
    # float32: 84 eps32 of the sum of |terms|
    assert sum(c.value for c in terms) == pytest.approx(actual, rel=1e-4, abs=1e-5 * scale)
    for c in terms:
        if c.kind == "attn_bias":  # tiny-llama has no b_O: the per-head OV terms account for all of attn_out
            assert abs(c.value) < 1e-5  # no b_O: exactly 0 up to float32 noise
        if c.kind == "head":
            assert c.position <= 5  # causal


def test_feature_preactivation_from_its_input_vector(setup):
    """pre_j = W_enc[:, j] . ln2_normalized + b_enc = (W_enc[:, j] / s) . resid_mid + b_enc."""
    model, tcs, cc = setup
    tc = tcs[2]
    with torch.no_grad():
        pre = tc.encode(cc.cache["blocks.2.ln2.hook_normalized"][4:5]).pre[0]
    for j in (0, 7, 30):
        vec, L, where, pos = fc._continue(model, tcs, cc, fc.Contribution("feature", 2, j, 4, 0.0), None, 4)
        terms = fc.decompose(model, tcs, cc, vec, L, where, pos)
        total = sum(c.value for c in terms) + float(tc.b_enc[j].detach())
        # float32, 84 eps32 of sum |terms|
        assert total == pytest.approx(float(pre[j]), rel=1e-4, abs=1e-5 * sum(abs(c.value) for c in terms))


def test_head_hop_continuation_reproduces_its_contribution(setup):
    model, tcs, cc = setup
    u = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(9))
    heads = [c for c in fc.decompose(model, tcs, cc, u, 2, "mid", 6) if c.kind == "head"][:6]
    for c in heads:
        vec, L, where, pos = fc._continue(model, tcs, cc, c, u, 6)
        terms = fc.decompose(model, tcs, cc, vec, L, where, pos)
        total = sum(x.value for x in terms)
        # float32, 84 eps32 of sum |terms|
        assert total == pytest.approx(c.value, rel=1e-4, abs=1e-5 * sum(abs(x.value) for x in terms))


def test_greedy_paths_follow_largest_contributions(setup):
    model, tcs, cc = setup
    u = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(3))
    paths = fc.greedy_paths(model, tcs, cc, u, 2, "mid", 6, n_iters=2, n_branches=3, beam=4)
    first = sorted((c for c in fc.decompose(model, tcs, cc, u, 2, "mid", 6) if c.kind in ("feature", "head")),
                   key=lambda c: -c.value)[:3]
    one_hop = [p for p in paths if len(p.nodes) == 1]
    assert [p.nodes[0] for p in one_hop] == [c for c in first if c.value > 0]
    two_hop = [p for p in paths if len(p.nodes) == 2]
    assert two_hop and all(p.value > 0 for p in two_hop)
    assert all(p.nodes[1].layer <= p.nodes[0].layer for p in two_hop)


def test_de_embedding_and_errors(setup):
    model, tcs, cc = setup
    top = fc.de_embedding(model, tcs[0], 5, top=3)
    scores = model.W_E.float() @ tcs[0].W_enc[:, 5].detach()
    assert [t for t, _ in top] == scores.topk(3).indices.tolist()
    with pytest.raises(KeyError, match="no transcoder for layer 1"):
        fc.decompose(model, {0: tcs[0]}, cc, torch.randn(model.cfg.d_model), 2, "mid", 3)
    with pytest.raises(ValueError, match="where must be"):
        fc.decompose(model, tcs, cc, torch.randn(model.cfg.d_model), 2, "post", 3)


def test_logit_difference_decomposes_exactly(setup):
    """Target = logit[a] - logit[b] at the last position: the decomposition sums to the model's logit difference."""
    model, tcs, cc = setup
    logits = model(cc.tokens[None], return_type="logits")[0, -1]
    u = fc.logit_direction(model, cc, 5, 9, position=-1)
    terms = fc.decompose(model, tcs, cc, u, model.cfg.n_layers, "pre", -1)
    want = float(logits[5] - logits[9])
    # float32 decomposition of a logit difference: 1e-5 = 84 eps32 of the sum of |terms| (cancelling terms)
    assert sum(c.value for c in terms) == pytest.approx(want, rel=1e-4, abs=1e-5 * sum(abs(c.value) for c in terms))


def test_attention_hop_under_grouped_query_attention(tmp_path):
    """GQA (4 query heads, 2 key/value heads, as SmolLM2's 9/3): the bridge's W_V holds the kv heads; each
    query head's OV x pattern term must equal the direct measurement z_h W_O[h] . u from hook_z."""
    from interp.models import load_model
    from interp.models.tiny import TinyConfig, char_tokenizer, tiny_hf_model

    tok = char_tokenizer()
    tiny_hf_model(TinyConfig(arch="llama", n_layers=2, n_kv_heads=2), len(tok)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model = load_model(str(tmp_path), device="cpu")
    assert model.W_V.shape[1] == 2 and model.W_O.shape[1] == 4  # the case under test
    toks = torch.randint(4, 99, (8,), generator=torch.Generator().manual_seed(4))
    toks[0] = 0
    cc = fc.run_cache(model, toks)
    _, cache = model.run_with_cache(toks[None], names_filter=lambda n: n.endswith("attn.hook_z"))
    u = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(5))
    for layer in range(2):
        terms = fc._attn_terms(model, cc, u, layer, 7)
        for h in range(4):
            ov = sum(c.value for c in terms if c.kind == "head" and c.index == h)
            direct = float(cache[f"blocks.{layer}.attn.hook_z"][0, -1, h] @ model.W_O[layer, h].float() @ u)
            assert ov == pytest.approx(direct, rel=1e-4, abs=1e-6)  # one float32 d_head x d_model product: 1e-4 / 1e-6


def test_layers_without_a_transcoder_count_as_whole_mlps(setup):
    model, tcs, cc = setup
    u = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(11))
    only1 = {1: tcs[1]}
    terms = fc.decompose(model, only1, cc, u, 2, "mid", 5, missing="mlp")
    actual = float(cc.cache["blocks.2.hook_resid_mid"][5] @ u)
    # float32, 84 eps32 of sum |terms|
    assert sum(c.value for c in terms) == pytest.approx(actual, rel=1e-4, abs=1e-5 * sum(abs(c.value) for c in terms))
    mlp = [c for c in terms if c.kind == "mlp"]
    assert [c.layer for c in mlp] == [0]
    # approx default rel 1e-6: the same float32 product
    assert mlp[0].value == pytest.approx(float(cc.cache["blocks.0.hook_mlp_out"][5] @ u))
    assert {c.layer for c in terms if c.kind == "feature"} <= {1}
    paths = fc.greedy_paths(model, only1, cc, u, 2, "mid", 5, n_iters=2, n_branches=3, beam=4, missing="mlp")
    assert paths and all(n.kind in ("feature", "head") for p in paths for n in p.nodes)
    with pytest.raises(ValueError, match="missing must be"):
        fc.decompose(model, only1, cc, u, 2, "mid", 5, missing="skip")
