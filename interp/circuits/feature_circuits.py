"""Transcoder feature circuits: exact direct-path attribution through MLP and attention hops, greedy path search.

After Dunefsky, Chlenski & Nanda 2024 (arXiv 2406.11944, ``circuit_analysis.py``).  With a
transcoder TC_l at every layer's MLP, the residual stream at a location is a sum of terms, each
produced by a node upstream.  For a vector ``u`` read at ``resid_mid`` or ``resid_pre`` of layer
L, position t (e.g. a feature's encoder row, or a logit-difference direction):

1. **Decompose** ``u . resid[t]`` exactly into direct contributions (with the norms' scales
   held constant, the paper's "LayerNorm as a constant"):

   * embedding:        ``u . embed[t]``
   * MLP hop (feature j of TC_l, l < L):  ``z_j(t) * (W_dec_l[j] . u)``  (activation x weight)
   * transcoder bias and error:           ``u . b_dec_l``,  ``u . (mlp_out_l[t] - TC_l(x)[t])``
   * an MLP without a transcoder (``missing="mlp"``): ``u . mlp_out_l[t]``, one node, not traced further
   * attention hop (head l.h, source s):  ``A_lh[t, s] * (x~_s W_V^h W_O^h) . u`` with
     ``x~_s = ln1.hook_normalized[s] * w_ln1`` (the OV circuit times the attention weight).

   The terms sum to ``u . resid[t]`` of the real forward pass (tested).
2. **Continue** a path through a node with its *input-side* vector: a feature j of layer l
   continues with ``W_enc_l[:, j] / s_ln2(t)`` at ``resid_mid_l[t]`` (its pre-activation is
   linear in that residual when the ln2 scale ``s`` is frozen); a head continues with
   ``A[t, s] * w_ln1 * (W_V^h W_O^h u) / s_ln1(s)`` at ``resid_pre_l[s]``.
3. **Greedy path search** (:func:`greedy_paths`): a beam search from the target (e.g.
   :func:`logit_direction`, a logit difference through the frozen final norm), expanding
   each path by its ``n_branches`` largest contributions for ``n_iters`` hops.
4. **De-embedding** (:func:`de_embedding`): ``W_E @ f_enc`` scores every vocabulary token by
   its direct effect on a feature's encoder through the embedding.

Assumes a TransformerBridge whose ``blocks.L.ln{1,2}.hook_normalized`` is the normalised input
before the norm weight (RMSNorm/LayerNorm) and attention without output bias (as Llama);
``W_V``/``W_O`` as TransformerLens stacks them ([L, H, d_model, d_head], [L, H, d_head, d_model]).

Cost: one forward pass of the prompt; each decomposition encodes one row per transcoder layer and
reads every head's OV circuit, O(L (d_sae d_model + H d_head d_model + H T d_model)); a path search
runs at most ``beam * n_branches`` decompositions per hop.  Memory: the cached forward pass (all
hooks used, ~``12 * L * T * d_model`` floats plus patterns ``L * H * T^2``).  Design: the norms'
scales are frozen (the paper's choice), which makes every term exact and linear in ``u``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from interp.config import takes_config
from interp.dictionaries.base import SparseCoder



class Contribution(NamedTuple):
    """One direct term of ``u . resid[t]``."""

    kind: str
    """``feature``, ``head``, ``embed``, ``tc_bias``, ``tc_error`` or ``attn_bias``."""
    layer: int
    """Layer of the node (-1 for the embedding)."""
    index: int
    """Feature index (feature) or head index (head); -1 otherwise."""
    position: int
    """Position the node writes from (the source position for a head)."""
    value: float
    """Its contribution to ``u . resid[t]``."""


class Path(NamedTuple):
    """A path of nodes from the target back upstream, with the contribution of its last hop."""

    nodes: list
    """Contributions, target-side first."""
    value: float
    """Contribution of the last node along this path (the beam's score)."""


class CircuitCache(NamedTuple):
    """The activations a decomposition needs, from one forward pass."""

    cache: dict
    """Hook name -> tensor [T, ...] for the single prompt."""
    tokens: torch.Tensor
    """The prompt's token ids [T]."""


def run_cache(model, tokens: torch.Tensor) -> CircuitCache:
    """One forward pass of a single prompt ``[T]`` (or ``[1, T]``) caching what decompositions read."""
    tokens = tokens.reshape(1, -1) if tokens.ndim == 1 else tokens
    if tokens.shape[0] != 1:
        raise ValueError(f"run_cache takes one prompt, got a batch of {tokens.shape[0]}")
    keep = ("hook_embed", "hook_pos_embed", "ln_final.hook_scale", "ln1.hook_normalized", "ln1.hook_scale", "ln2.hook_normalized",
            "ln2.hook_scale", "attn.hook_pattern", "hook_mlp_out", "hook_attn_out", "hook_resid_pre",
            "hook_resid_mid")
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith(keep))
    return CircuitCache({k: v[0].detach() for k, v in cache.items()}, tokens[0])


def decompose(model, transcoders: dict[int, SparseCoder], cc: CircuitCache, u: torch.Tensor, layer: int,
              where: str = "mid", position: int = -1, missing: str = "error") -> list[Contribution]:
    """All direct contributions to ``u . resid_{where}_layer[position]`` (see module docstring).

    ``missing``: what a layer without a transcoder contributes: ``error`` raises a ``KeyError``;
    ``mlp`` adds its whole MLP output as one ``mlp`` node (exact, but not traced further).
    """
    if where not in ("pre", "mid"):
        raise ValueError(f"where must be 'pre' or 'mid', got {where!r}")
    if missing not in ("error", "mlp"):
        raise ValueError(f"missing must be 'error' or 'mlp', got {missing!r}")
    t = position % cc.tokens.shape[0]
    u = u.to(torch.float32)
    embed = cc.cache["hook_embed"][t] + (cc.cache["hook_pos_embed"][t] if "hook_pos_embed" in cc.cache else 0)
    out = [Contribution("embed", -1, -1, t, float(embed @ u))]
    for l in range(layer + (where == "mid")):  # attention of every block up to the target, MLPs before it
        out += _attn_terms(model, cc, u, l, t)
        if l < layer:
            out += _mlp_terms(transcoders, cc, u, l, t, missing)
    return out


def _mlp_terms(transcoders, cc, u, l, t, missing="error"):
    if l not in transcoders and missing == "mlp":
        return [Contribution("mlp", l, -1, t, float(cc.cache[f"blocks.{l}.hook_mlp_out"][t] @ u))]
    if l not in transcoders:
        raise KeyError(f"no transcoder for layer {l}: pass transcoders={{layer: tc}} for every layer up to the target")
    tc = transcoders[l]
    x = cc.cache[f"blocks.{l}.ln2.hook_normalized"][t : t + 1]
    code = tc.encode(x.to(tc.W_enc.device))
    z = code.acts[0].detach().cpu()
    contrib = z * (tc.W_dec.detach().cpu() @ u)  # [d_sae]: activation x weight
    res = [Contribution("feature", l, j, t, float(contrib[j])) for j in z.nonzero().flatten().tolist()]
    recon = tc.decode_code(code)[0].detach().cpu()
    res.append(Contribution("tc_bias", l, -1, t, float(tc.b_dec.detach().cpu() @ u)))
    res.append(Contribution("tc_error", l, -1, t, float((cc.cache[f"blocks.{l}.hook_mlp_out"][t] - recon) @ u)))
    return res


def _ov(model, l):
    """``W_V [H, d, dh]``, ``W_O [H, dh, d]`` per *query* head: under grouped-query attention the bridge's W_V
    holds the n_kv key/value heads, and query head h reads kv head ``h // (H / n_kv)`` (HF ``repeat_kv``)."""
    W_V, W_O = model.W_V[l].detach().float(), model.W_O[l].detach().float()
    return W_V.repeat_interleave(W_O.shape[0] // W_V.shape[0], dim=0), W_O


def _norm_weight(ln, d):
    """A norm's weight (``w`` on a bridge, ``weight`` on a torch module; ones where it has none)."""
    w = getattr(ln, "w", getattr(ln, "weight", None))
    return torch.ones(d) if w is None else w.detach().float().cpu()


def _attn_terms(model, cc, u, l, t):
    A = cc.cache[f"blocks.{l}.attn.hook_pattern"][:, t]  # [H, S]
    x = cc.cache[f"blocks.{l}.ln1.hook_normalized"]  # [S, d]
    W_V, W_O = _ov(model, l)
    xw = x * _norm_weight(model.blocks[l].ln1, x.shape[-1])
    ovu = torch.einsum("hdk,hkm,m->hd", W_V, W_O, u)  # [H, d]: W_V W_O u per head
    per = A * (xw @ ovu.T).T  # [H, S]
    res = [Contribution("head", l, h, s, float(per[h, s])) for h in range(per.shape[0]) for s in range(t + 1)]
    full = float(cc.cache[f"blocks.{l}.hook_attn_out"][t] @ u)
    res.append(Contribution("attn_bias", l, -1, t, full - float(per.sum())))  # b_O (and any remainder)
    return res


@dataclass(frozen=True)
class PathSearch:
    """Settings of :func:`greedy_paths`."""

    n_iters: int = 3
    """Hops searched upstream from the target."""
    n_branches: int = 5
    """Largest positive contributions (features and heads) each path continues through per hop."""
    beam: int = 20
    """Paths that survive each hop."""
    missing: str = "error"
    """A layer without a transcoder: ``error`` or ``mlp`` (its whole MLP output, one node; see :func:`decompose`)."""


@takes_config(PathSearch)
def greedy_paths(model, transcoders: dict[int, SparseCoder], cc: CircuitCache, u: torch.Tensor, layer: int,
                 where: str = "mid", position: int = -1, *, config: PathSearch) -> list[Path]:
    """Beam search for the paths carrying the most direct contribution into ``u . resid[position]``.

    Each hop decomposes the current vector, keeps the ``n_branches`` largest positive
    contributions from features and heads, and continues through them; the ``beam`` best
    paths survive each iteration.  Returns paths sorted by their last hop's contribution.
    Settings: a :class:`PathSearch` or its fields as keywords (``n_iters=2, beam=4``), not both.
    """
    frontier = [(Path([], float("inf")), u.float(), layer, where, position % cc.tokens.shape[0])]
    done: list[Path] = []
    for _ in range(config.n_iters):
        cand = []
        for path, vec, L, wh, t in frontier:
            terms = sorted((c for c in decompose(model, transcoders, cc, vec, L, wh, t, config.missing)
                            if c.kind in ("feature", "head") and c.value > 0), key=lambda c: -c.value)
            cand += [(Path(path.nodes + [c], c.value), vec, t, c) for c in terms[:config.n_branches]]
        cand.sort(key=lambda x: -x[0].value)
        done += [p for p, *_ in cand[:config.beam]]
        frontier = [(p, *_continue(model, transcoders, cc, c, vec, t)) for p, vec, t, c in cand[:config.beam]]
    return sorted(done, key=lambda p: -p.value)


def _continue(model, transcoders, cc, c: Contribution, u: torch.Tensor, t: int):
    """The input-side vector, layer, ``where`` and position a path continues with through the feature or
    head ``c`` (module doc, step 2)."""
    if c.kind == "feature":
        tc = transcoders[c.layer]
        s = cc.cache[f"blocks.{c.layer}.ln2.hook_scale"][c.position].reshape(())
        return tc.W_enc[:, c.index].detach().cpu().float() / s, c.layer, "mid", c.position
    W_V, W_O = _ov(model, c.layer)  # a head
    A = cc.cache[f"blocks.{c.layer}.attn.hook_pattern"][c.index]
    s = cc.cache[f"blocks.{c.layer}.ln1.hook_scale"][c.position].reshape(())
    w = _norm_weight(model.blocks[c.layer].ln1, u.shape[0])
    v = A[t, c.position] * w * (W_V[c.index] @ (W_O[c.index] @ u)) / s
    return v, c.layer, "pre", c.position


def logit_direction(model, cc: CircuitCache, good: int, bad: int, position: int = -1) -> torch.Tensor:
    """``u`` with ``u . resid_final[position] = logit[good] - logit[bad]`` (final-norm scale frozen).

    Use it as the target of :func:`decompose` / :func:`greedy_paths` with
    ``layer=model.cfg.n_layers, where="pre"`` (the residual stream after the last block).
    """
    t = position % cc.tokens.shape[0]
    W_U = model.W_U.detach().float().cpu()
    s = cc.cache["ln_final.hook_scale"][t].reshape(())
    return _norm_weight(model.ln_final, W_U.shape[0]) * (W_U[:, good] - W_U[:, bad]) / s


def de_embedding(model, transcoder: SparseCoder, feature: int, top: int = 10) -> list[tuple[int, float]]:
    """Tokens whose embedding most excites ``feature`` of a layer-0 transcoder: top of ``W_E @ f_enc``."""
    scores = model.W_E.detach().float().cpu() @ transcoder.W_enc[:, feature].detach().cpu()
    v, i = scores.topk(top)
    return list(zip(i.tolist(), v.tolist()))
