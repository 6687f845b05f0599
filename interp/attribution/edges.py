"""Edge attribution patching (EAP) and EAP-IG: a score for every edge of the residual-stream graph.

The graph (Elhage et al. 2021's residual-stream view; the ACDC / EAP graph):

* **senders** ``u`` write into the residual stream: the token embedding (``hook_embed``), the
  positional embedding where the model adds one (``hook_pos_embed``, GPT-2), every attention
  head's output ``z_h @ W_O[h]`` (``blocks.L.attn.hook_z``, head h) and every MLP output
  (``blocks.L.hook_mlp_out``).  The residual stream before ``ln_final`` is exactly the sum of the
  sender outputs plus the attention output biases ``b_O`` (constant, so they never score).
* **receivers** ``v`` read the residual stream: the q, k and v input of every head (per query
  head for q; per *key/value* head for k and v, so a grouped-query model such as SmolLM2 has
  H q receivers and H_kv k and v receivers per layer, the units that really exist), every MLP
  input and the logits (the final residual, read by ``ln_final`` and the unembedding).
  TransformerLens names: ``blocks.L.hook_q_input`` / ``hook_k_input`` / ``hook_v_input`` (head),
  ``blocks.L.hook_mlp_in``, ``ln_final.hook_in``.
* an edge ``u -> v`` exists when ``u`` writes before ``v`` reads (a head of layer L feeds the MLP
  of layer L only in sequential blocks, not in parallel attention/MLP blocks such as Pythia's).

Score (Hanna, Pezzelle & Belinkov 2024, "Have Faith in Faithfulness"; reference
``hannamw/EAP-IG`` ``src/eap/attribute.py``; docs/methods.md, EAP and EAP-IG)::

    S(u -> v) = sum_t (z_u(x~) - z_u(x)) . g_v ,  batch mean,
    g_v = (1/m) sum_{k=0}^{m-1} dL/d in_v |_{e_k},  e_k = e(x~) + (k/m) (e(x) - e(x~))

``z_u`` is u's write into the residual (``d_model``), ``x`` the clean and ``x~`` the corrupted
prompt, ``e`` the input embeddings (left Riemann sum, m = 5 as in the paper).  ``in_v`` is v's own
copy of the residual stream: ``g_v`` is the gradient through v only, not through the skip
connection.  ``eap`` takes the gradient at the clean input only (m = 1, alpha = 1);
``clean-corrupted`` averages the gradients at the two ends.  The score is the first-order
estimate of edge patching (edge_patching.py): the clean run with v's input moved by
``z_u(x~) - z_u(x)`` and nothing else changed.

``eap-ig-activations`` (hannamw/EAP-IG ``get_scores_ig_activations``) interpolates sender outputs
instead of the input: for each sender group n (the token embedding, one layer's heads, one MLP) the
clean run is differentiated with n's output set to ``z_n(x~) + (k/m)(z_n(x) - z_n(x~))``, k = 1..m
(right Riemann), everything downstream recomputed.  ``share="own"`` (default) scores the senders of n
with n's gradients; then, with m -> infinity, the scores out of group n sum to n's noising activation
patch (the path integral of d m / d alpha; tested):
``sum_{u in n} sum_v S(u -> v) -> m(x | z_n <- z_n(x~)) - m(x)``.  ``share="all"`` (the
reference) uses the mean of the gradients over every group for every edge; it has no such identity
(the gradient into group n's own receivers is zero while n's output is fixed).  Cost: 2L + 1 groups of
m forward/backward passes of B*T tokens; on the fast path (prefix replay, ``config["prefix_replay"]``)
the blocks before group n's layer l compute the clean run in every copy and are not recomputed:
the m copies run blocks l .. L-1 only, so over the groups (L + 2) * m full passes instead of
(2L + 1) * m.  ``share="own"`` replays the clean block outputs cached in the first forward (the
receivers before block l get no gradient, and no edge out of n reads them); ``share="all"`` needs
their gradients and runs blocks 0 .. l-1 once per step batch at batch B with autograd (their output
repeated for the m copies, so one backward through them): (L + 2) * m + L - 1 passes.  Replay is
exact (tests/test_edges.py compares it with the reference).  Where the model is linear in the senders
every variant equals edge patching (tested on the logits receiver).

Algorithm (one forward + one backward per batch of interpolation steps):
1. Forward clean and corrupted prompts once each (one stacked ``[2B, T]`` batch; EAP reads the
   clean senders in its gradient pass instead), caching every sender output; the sender
   differences ``D [N_s, B, T, d_model]``.
2. Forward the ``m`` interpolated inputs as one ``[m*B, T]`` batch (chunks of ``max_tokens``);
   one backward of ``sum_k w_k sum_b L_kb`` gives
   - MLP and logits receivers: the gradient at a zero "identity node" ``delta`` added to the input
     of ``ln2`` / ``ln_final`` only (it feeds that receiver and nothing else); ``delta`` is
     ``[B, T, d]`` shared by the m copies, so its gradient is already the sum over steps;
   - head receivers (fast path): the gradient at the projection outputs ``hook_q/k/v``
     ``[N, T, H, d_head]``, mapped back per head through ``W_Q[h]`` and the Jacobian of ``ln1``
     at that copy's residual (``ln1`` recomputed on ``[N, T, R, d]``, R = receivers of the layer);
   - reference path (``fast=False`` or ``INTERP_REFERENCE=1``): a zero ``delta`` per head
     receiver, the head's slice of q/k/v recomputed from ``ln1(x + delta)`` by the model's own
     modules inside the forward.  tests/test_edges.py checks the two agree.
3. ``S = D.flatten(1) @ G.flatten(1).T / B``, zero where there is no edge.

Cost: EAP 1 forward (corrupted) + 1 forward/backward of B*T tokens (the clean senders are read in
the gradient pass); EAP-IG 2 forward + m forward/backward (batched).  Memory: sender differences
``N_s*B*T*d`` and receiver gradients ``N_r*B*T*d`` floats (SmolLM2-135M, B = 8, T = 20: N_s = 301,
N_r = 481: 111 MB + 177 MB), the score matrix ``N_s x N_r`` (145k floats), and the activations of
one ``max_tokens`` forward/backward plus, per layer, ``ln1`` on ``N*T*R*d`` floats (R = 15 for
SmolLM2) during the head step.

Not supported: models that normalise a sublayer's output before adding it to the residual
(Gemma 2/3 ``post_attention_layernorm``): their head outputs are not additive senders, and
:func:`edge_graph` raises.
"""

from __future__ import annotations

import time
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from interp.fastpath import use_fast
from interp.models import scoped_hooks
from interp.models.hooks import component_label, did_you_mean, head_label, mlp_hook, save_hook
from interp.models.modules import original

from .fastpath import (PrefixCache, fast_forward, hook_layer, interpolate, map_tensors,
                       reads_last_position_only)

QUADRATURE = {"eap": "clean", "eap-ig": "riemann_left", "clean-corrupted": "ends",
              "eap-ig-activations": "riemann_right"}
METHODS = tuple(QUADRATURE)
SHARES = ("own", "all")
NORM_INPUT = {"mlp": "blocks.{layer}.ln2.hook_in", "logits": "ln_final.hook_in"}
"""The input of the norm that feeds an MLP / logits receiver alone: where its input moves."""


def acc_dtype(model) -> torch.dtype:
    """Accumulation dtype of scores and gradients: float64 for a float64 model, else float32."""
    return torch.promote_types(next(model.parameters()).dtype, torch.float32)


# ------------------------------------------------------------------------------------------
# the graph
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    """One sender or receiver of the edge graph."""

    name: str
    """Short label: ``embed``, ``pos_embed``, ``L3H2``, ``MLP4`` (senders); ``L3H2.q``,
    ``L3KV1.k`` (grouped-query k/v head), ``MLP4``, ``logits`` (receivers)."""
    kind: str
    """Sender: ``embed``, ``pos``, ``head``, ``mlp``; receiver: ``q``, ``k``, ``v``, ``mlp``, ``logits``."""
    layer: int
    """Block index; -1 for the embeddings, ``n_layers`` for the logits."""
    head: int | None
    """Head index (query head for q and senders; key/value head for k and v); None otherwise."""
    hook: str
    """TransformerLens hook name of the activation (indexed by ``head`` on its head axis)."""
    stage: int
    """Order in the residual stream: a sender feeds a receiver iff ``sender.stage < receiver.stage``."""


@dataclass
class EdgeGraph:
    """Senders, receivers and which (sender, receiver) pairs are edges."""

    senders: list[Node]
    receivers: list[Node]
    mask: torch.Tensor
    """Bool ``[N_s, N_r]``: True where the sender writes before the receiver reads."""
    n_heads: int
    n_kv_heads: int

    @property
    def n_edges(self) -> int:
        return int(self.mask.sum())

    def sender_index(self, name: str) -> int:
        return _index(self.senders, name, "sender")

    def receiver_index(self, name: str) -> int:
        return _index(self.receivers, name, "receiver")

    def edge_name(self, i: int, j: int) -> str:
        return f"{self.senders[i].name}->{self.receivers[j].name}"

    def resolve(self, edges: Sequence) -> list[tuple[int, int]]:
        """``edges`` as (sender index, receiver index); accepts names, index pairs or ``"u->v"``.

        A ``ValueError`` names any pair that is not an edge (the receiver reads before the sender writes).
        """
        out = []
        for e in edges:
            if isinstance(e, str):
                e = tuple(e.split("->", 1))
            if len(e) != 2:
                raise ValueError(f"edge {e!r} must be a (sender, receiver) pair or read 'sender->receiver'")
            u, v = e
            i = self.sender_index(u) if isinstance(u, str) else int(u)
            j = self.receiver_index(v) if isinstance(v, str) else int(v)
            if not (0 <= i < len(self.senders) and 0 <= j < len(self.receivers)):
                raise ValueError(f"edge {e!r} is out of range ({len(self.senders)} senders, "
                                 f"{len(self.receivers)} receivers)")
            if not self.mask[i, j]:
                raise ValueError(f"{self.edge_name(i, j)} is not an edge: {self.receivers[j].name} reads the "
                                 f"residual stream before {self.senders[i].name} writes to it")
            out.append((i, j))
        return out


def _index(nodes: list[Node], name: str, what: str) -> int:
    names = [n.name for n in nodes]
    if name in names:
        return names.index(name)
    raise ValueError(f"unknown {what} {name!r}" + did_you_mean(name, names)
                     + f"; {what}s are named like " + ", ".join(n.name for n in nodes[:3]) + ", ...")


@dataclass
class LayerWeights:
    """The linear maps of one block in a fixed layout, read off the modules (identity probes)."""

    W_q: torch.Tensor
    """``[H, d_head, d_model]``: head h's query = W_q[h] @ ln1(x) + bias."""
    W_k: torch.Tensor
    """``[H_kv, d_head, d_model]``."""
    W_v: torch.Tensor
    """``[H_kv, d_head, d_model]``."""
    W_o: torch.Tensor
    """``[H, d_head, d_model]``: head h writes z_h @ W_o[h] into the residual."""
    b_o: torch.Tensor
    """``[d_model]``: the attention output bias (zeros where there is none)."""
    b_qkv: dict[str, torch.Tensor]
    """``"q"``: ``[H, d_head]``, ``"k"`` / ``"v"``: ``[H_kv, d_head]``: the projection biases (zeros where none)."""


def _linear_map(mod, d_in: int, probe: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W [d_in, d_out], b [d_out])`` of an affine module: ``b`` is its value at 0 (zeros where it has no
    bias); ``W`` read from ``nn.Linear`` ([out, in]) and Hugging Face ``Conv1D`` ([in, out]) weights, else
    (or with ``probe``) by probing the module with the identity, which works for any affine layout (tests
    compare the two)."""
    with torch.no_grad():
        b = mod(torch.zeros(1, d_in).to(next(mod.parameters())))[0]  # in the module's dtype, on its device
        if not probe and isinstance(mod, torch.nn.Linear):
            return mod.weight.detach().T, b
        if not probe and type(mod).__name__ == "Conv1D":
            return mod.weight.detach(), b
        return mod(torch.eye(d_in).to(b)) - b, b


def check_supported(model) -> None:
    """A ``ValueError`` for architectures whose sublayer outputs are not additive senders."""
    blk = model.blocks[0]
    names, what = set(dict(blk.named_children())), type(blk).__name__
    post = sorted(names & {"ln1_post", "ln2_post"})
    if post:
        raise ValueError(f"edge attribution needs the residual stream to be a sum of sender outputs; {what} "
                         f"normalises the attention/MLP output before adding it (post-norms {post}, Gemma "
                         "2/3), so per-head writes are not additive. Use node-level attribution "
                         "(interp.attribution) instead.")
    missing = sorted({"ln1", "ln2"} - names) + [f"attn.{s}" for s in "qkvo" if not hasattr(blk.attn, s)]
    if missing:
        raise ValueError("edge attribution needs separate norms before attention (ln1) and MLP (ln2), so that a "
                         f"receiver's input can move alone, and separate q/k/v/o projections; {what} has no {missing}")


def layer_weights(model, probe: bool = False) -> list[LayerWeights]:
    """Per block, W_Q, W_K, W_V, W_O per head and b_O (see :class:`LayerWeights`); ``probe`` reads
    every map by probing the module with the identity instead of its weight attribute."""
    check_supported(model)
    d, dh, H = model.cfg.d_model, model.cfg.d_head, model.cfg.n_heads
    out = []
    for blk in model.blocks:
        maps = {s: _linear_map(original(getattr(blk.attn, s)), d if s != "o" else H * dh, probe)
                for s in "qkvo"}
        W = {s: maps[s][0].T.reshape(-1, dh, d).contiguous() for s in "qkv"}  # [d, H*dh] -> [H, dh, d]
        W_o, b_o = maps["o"]
        out.append(LayerWeights(W["q"], W["k"], W["v"], W_o.reshape(H, dh, d).contiguous(), b_o,
                                {s: maps[s][1].reshape(-1, dh) for s in "qkv"}))
    return out


def edge_graph(model, weights: list[LayerWeights] | None = None) -> EdgeGraph:
    """The senders, receivers and edge mask of ``model`` (see the module doc)."""
    weights = weights if weights is not None else layer_weights(model)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    Hkv = weights[0].W_k.shape[0]
    parallel = bool(getattr(model.cfg, "parallel_attn_mlp", False))  # attention and MLP read one residual
    gqa = Hkv != H
    senders = [Node("embed", "embed", -1, None, "hook_embed", -1)]
    if getattr(model.cfg, "positional_embedding_type", "") == "standard" and "hook_pos_embed" in model.hook_dict:
        senders.append(Node("pos_embed", "pos", -1, None, "hook_pos_embed", -1))
    receivers = []
    for l in range(L):
        mlp = component_label(mlp_hook(l))
        senders += [Node(head_label(l, h), "head", l, h, f"blocks.{l}.attn.hook_z", 2 * l) for h in range(H)]
        senders.append(Node(mlp, "mlp", l, None, mlp_hook(l), 2 * l + 1))
        for kind, n in (("q", H), ("k", Hkv), ("v", Hkv)):  # a grouped k/v head is not a query head: L3KV1.k
            receivers += [Node(f"{f'L{l}KV{g}' if gqa and kind != 'q' else head_label(l, g)}.{kind}", kind, l,
                               g, f"blocks.{l}.hook_{kind}_input", 2 * l) for g in range(n)]
        receivers.append(Node(mlp, "mlp", l, None, f"blocks.{l}.hook_mlp_in", 2 * l + (0 if parallel else 1)))
    receivers.append(Node("logits", "logits", L, None, "ln_final.hook_in", 2 * L))
    s_stage = torch.tensor([n.stage for n in senders])
    r_stage = torch.tensor([n.stage for n in receivers])
    mask = s_stage[:, None] < r_stage[None, :]
    return EdgeGraph(senders, receivers, mask, H, Hkv)


# ------------------------------------------------------------------------------------------
# senders: what each one writes into the residual stream
# ------------------------------------------------------------------------------------------
def sender_outputs(model, tokens: torch.Tensor, graph: EdgeGraph, weights: list[LayerWeights],
                   store: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Z [N_s, B, T, d_model], logits)``: every sender's write into the residual stream (float32,
    float64 for a float64 model); ``store`` also gets the raw activation at each sender hook (detached)."""
    store = {} if store is None else store
    device = next(model.parameters()).device
    with torch.no_grad(), scoped_hooks(model, fwd=sender_reads(graph, store)):
        logits = model(tokens.to(device))
    return _sender_rows(store, graph, weights, acc_dtype(model)), logits


def sender_reads(graph: EdgeGraph, store: dict) -> list[tuple[str, Callable]]:
    """Forward hooks that put the activation at each hook a sender is read from in ``store`` (detached)."""
    return [(h, save_hook(store, h, torch.Tensor.detach)) for h in {n.hook for n in graph.senders}]


def _sender_rows(store: dict, graph: EdgeGraph, weights: list[LayerWeights], acc: torch.dtype):
    rows = [store[n.hook].to(acc) for n in graph.senders if n.layer == -1]
    for l in range(len(weights)):
        z = store[f"blocks.{l}.attn.hook_z"].to(acc)  # [B, T, H, dh]
        rows += list(torch.einsum("bthe,hed->hbtd", z, weights[l].W_o.to(acc)).unbind(0))
        rows.append(store[f"blocks.{l}.hook_mlp_out"].to(acc))
    return torch.stack(rows)


def sender_differences(model, task, graph: EdgeGraph, weights: list[LayerWeights], prefix=None, store=None):
    """``(D = Z(corrupt) - Z(clean) [N_s, B, T, d], e_clean, e_corrupt, logits_clean, logits_corrupt)``
    from one forward of the stacked ``[2B, T]`` batch (``prefix``: a PrefixCache to record the clean rows;
    ``store``: the raw sender activations of that pass, clean rows then corrupted, as :func:`sender_outputs`)."""
    B = task.clean.shape[0]
    with prefix.capture(slice(0, B)) if prefix is not None else nullcontext():
        Z, logits = sender_outputs(model, torch.cat([task.clean, task.corrupt]), graph, weights, store=store)
    D = Z[:, B:] - Z[:, :B]
    return D, Z[0, :B], Z[0, B:], logits[:B], logits[B:]


# ------------------------------------------------------------------------------------------
# receivers: moving one receiver's input (the primitive of edge patching and of the reference gradient)
# ------------------------------------------------------------------------------------------
def receiver_input_hooks(model, graph: EdgeGraph, patches: dict[int, tuple], B: int) -> list[tuple[str, Callable]]:
    """Forward hooks that move receiver ``j``'s input by ``patches[j] = (copies, offset)``.

    The forward runs ``c`` stacked copies of a ``[B, T]`` batch.  ``copies`` is a LongTensor of
    copy indices with ``offset [len(copies), B, T, d]``, or None with ``offset [B, T, d]`` added
    to every copy.  Only receiver j sees ``in_j + offset``: an MLP / logits receiver through the
    input of ``ln2`` / ``ln_final`` (which feed nothing else), a head through its own slice of the
    q/k/v projection, recomputed by the model's modules as ``proj(ln1(x + offset))``.
    """
    hooks: list[tuple[str, Callable]] = []
    xs: dict[int, torch.Tensor] = {}
    heads: dict[tuple[int, str], list] = {}
    for j, (copies, off) in patches.items():
        r = graph.receivers[j]
        idx = slice(None) if copies is None else copies  # the copies that move
        if r.kind in "qkv":
            heads.setdefault((r.layer, r.kind), []).append((r.head, idx, off))
        else:  # a KeyError for a kind no receiver has
            hooks.append((NORM_INPUT[r.kind].format(layer=r.layer), _add_hook(idx, off, B)))
    hooks += [(f"blocks.{l}.ln1.hook_in", save_hook(xs, l)) for l in {l for l, _ in heads}]  # (nothing moves ln1's input)
    for (l, kind), items in heads.items():
        blk = model.blocks[l]
        ln, proj = original(blk.ln1), original(getattr(blk.attn, kind))

        def fn(act, hook, l=l, items=items, ln=ln, proj=proj):  # act [c*B, T, Hx, dh]
            c = act.shape[0] // B
            x = xs[l].reshape(c, B, *xs[l].shape[1:])
            out = act.clone().reshape(c, B, *act.shape[1:])
            for h, idx, off in items:
                xin = x[idx] + off.to(x.dtype)
                new = proj(ln(xin)).reshape(*xin.shape[:3], *act.shape[2:])[..., h, :]
                out[idx, :, :, h] = new.to(out.dtype)
            return out.reshape(act.shape)

        hooks.append((f"blocks.{l}.attn.hook_{kind}", fn))
    return hooks


def _add_hook(idx, off, B):
    def fn(x, hook):
        xv = x.reshape(-1, B, *x.shape[1:]).clone()
        xv[idx] += off.to(x.dtype)
        return xv.reshape(x.shape)

    return fn


# ------------------------------------------------------------------------------------------
# receiver gradients
# ------------------------------------------------------------------------------------------
def _head_grads_posthoc(ln, x: torch.Tensor, g: dict, w: LayerWeights, acc: torch.dtype) -> torch.Tensor:
    """``[N, T, R, d]``: per-head gradient at ln1's input through each q/k/v slice (R = H + 2 H_kv), in
    ``acc`` (:func:`acc_dtype`)."""
    u = torch.cat([torch.einsum("nthe,hed->nthd", g[k].to(acc), getattr(w, f"W_{k}").to(acc)) for k in "qkv"], dim=2)
    with torch.enable_grad():
        xr = x.detach()[:, :, None, :].expand(*x.shape[:2], u.shape[2], x.shape[-1]).clone().requires_grad_(True)
        y = ln(xr)
        (gx,) = torch.autograd.grad(y, xr, grad_outputs=u.to(y.dtype))
    return gx.to(acc)


@dataclass
class GradPath:
    """What :func:`receiver_grads` differentiates: the run of ``tokens`` with the activation at hook
    ``at`` replaced by ``corrupt + alpha_k (clean - corrupt)`` for each step k (weight ``weights[k]``)."""

    alphas: torch.Tensor
    """``[m]`` interpolation points (float64)."""
    weights: torch.Tensor
    """``[m]`` quadrature weights."""
    clean: torch.Tensor | None = None
    """The activation at ``at`` in the clean run; None with ``corrupt`` None: the plain run (EAP, one step)."""
    corrupt: torch.Tensor | None = None
    at: str = "hook_embed"
    prefix: PrefixCache | None = None
    """Fast path: block outputs replayed before ``at``'s block (no gradient reaches their receivers)."""
    prefix_grad: bool = False
    """Fast path: the blocks before ``at``'s block run once at batch B with autograd (exact everywhere)."""
    max_tokens: int = 4096
    """Tokens per forward/backward; ``max_tokens // (B*T)`` steps a batch."""
    last_only: bool = False
    """Unembed only the last position (the metric reads only it)."""


def receiver_grads(model, tokens: torch.Tensor, metric: Callable, graph: EdgeGraph, weights: list[LayerWeights],
                   path: GradPath, fast: bool | None = None):
    """``(G [N_r, B, T, d], f)``: G = sum_k w_k dL/d in_v along ``path`` (see :class:`GradPath`), ``f`` the
    metric ``[c, B]`` of the last step batch's ``c`` copies (EAP's one copy: the clean run's metric).

    Steps are batched ``max_tokens // (B*T)`` at a time, one backward per batch.
    Prefix replay (fast path, ``at`` in block ``L > 0``): blocks ``0 .. L-1`` compute the plain run of
    ``tokens`` in every copy, so they run at most once at batch ``B``:

    * ``path.prefix`` (a :class:`PrefixCache` captured on ``tokens``): their output is replayed with no
      graph behind it.  No gradient reaches the receivers of blocks ``< L`` (their rows of ``G``
      stay 0); the receivers of block ``L`` and later get exactly the full computation's gradient
      (block ``L``'s q/k/v receivers only if the cached outputs are autograd leaves, as
      :func:`_ig_activations` makes them; else theirs stay 0 too).
    * ``path.prefix_grad``: per step batch they run once at batch ``B`` with autograd (every receiver
      hook in place) and their output is repeated for the ``c`` copies; the backward sums the
      copies' gradients at that output and runs through the prefix once.  Exact for every receiver
      (the prefix Jacobian is the same in every copy).  Cost: the prefix forward/backward of ``B``
      rows instead of ``c*B``.
    """
    e_clean, e_corrupt, at, prefix = path.clean, path.corrupt, path.at, path.prefix
    fast = use_fast(fast)
    B, T = tokens.shape
    L, d = model.cfg.n_layers, model.cfg.d_model
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    acc = acc_dtype(model)
    G = torch.zeros(len(graph.receivers), B, T, d, dtype=acc, device=device)
    # per block, its q / k / v receivers in graph order (query heads, then key and value heads)
    head_rows = {l: [j for j, r in enumerate(graph.receivers) if r.layer == l and r.kind in "qkv"]
                 for l in range(L)}
    chunk = max(1, path.max_tokens // (B * T))
    for s in range(0, len(path.alphas), chunk):
        a = path.alphas[s:s + chunk].to(device, acc)
        wts = path.weights[s:s + chunk].to(device, acc)
        c = len(a)
        # identity nodes: zero offsets whose gradient is the gradient through that receiver only
        deltas = {j: torch.zeros(B, T, d, dtype=dtype, device=device, requires_grad=True)
                  for j, r in enumerate(graph.receivers) if r.kind not in "qkv" or not fast}
        hooks = receiver_input_hooks(model, graph, {j: (None, dl) for j, dl in deltas.items()}, B)
        store: dict[str, torch.Tensor] = {}
        # a leaf so that every layer's q/k/v is in the graph (then replaced by the interpolation at ``at``)
        hooks.insert(0, ("hook_embed", lambda x, hook: x.detach().requires_grad_(True)))
        if e_clean is not None:
            interp = interpolate(e_corrupt, e_clean, a.to(e_clean.dtype)).flatten(0, 1).to(dtype)
            interp.requires_grad_(True)
            hooks.insert(1, (at, lambda x, hook, v=interp: v))
        if fast:
            for l in range(L):  # kept in the autograd graph
                hooks.append((f"blocks.{l}.ln1.hook_in", save_hook(store, f"x{l}")))
                hooks += [(f"blocks.{l}.attn.hook_{k}", save_hook(store, f"{k}{l}")) for k in "qkv"]
        layer = hook_layer(at) if fast and (prefix is not None or path.prefix_grad) else 0
        with torch.enable_grad(), scoped_hooks(model, fwd=hooks):
            pre = _prefix_with_grad(model, tokens.to(device), layer) if layer and path.prefix_grad else prefix
            with fast_forward(model, pre if layer else None, c, layer, path.last_only):
                logits = model(tokens.to(device).repeat(c, 1))
            f = metric(logits).reshape(c, B)
            keys = [k for k in store if not k.startswith("x") and store[k].requires_grad]
            gs = torch.autograd.grad((f * wts[:, None]).sum(), list(deltas.values()) + [store[k] for k in keys],
                                     allow_unused=True, materialize_grads=True)  # zeros where none flows
        for j, gj in zip(deltas, gs[:len(deltas)]):
            G[j] += gj.to(acc)
        if fast:
            gq = dict(zip(keys, gs[len(deltas):]))
            for l in range(L):
                if f"x{l}" not in store:  # a replayed, detached block: no gradient reaches its receivers
                    continue
                g = {k: gq[f"{k}{l}"] for k in "qkv"}  # a block that runs computes q/k/v from a grad input
                gx = _head_grads_posthoc(original(model.blocks[l].ln1), store[f"x{l}"], g, weights[l], acc)
                # rows: c*B copies, or B for a prefix block run once (prefix_grad)
                G[head_rows[l]] += gx.reshape(-1, B, T, gx.shape[2], d).sum(0).permute(2, 0, 1, 3)
    return G, f.detach()


class _PrefixDone(Exception):
    """Stops a forward once the prefix blocks have run (:func:`_prefix_with_grad`)."""


def _prefix_with_grad(model, tokens: torch.Tensor, layer: int) -> PrefixCache:
    """A :class:`PrefixCache` holding block ``layer-1``'s output on ``tokens`` *with* its autograd graph:
    the forward (every registered hook fires) stops after that block.  Memory: the activations of
    blocks ``0 .. layer-1`` at batch ``B``."""
    cache = PrefixCache(model)

    def stop(mod, inp, out):
        cache.outs[layer - 1] = out
        raise _PrefixDone

    with model.blocks[layer - 1].register_forward_hook(stop), suppress(_PrefixDone):  # hook removed on exit
        model(tokens)
    return cache  # (PrefixCache.replay refuses a block the forward did not reach)


# ------------------------------------------------------------------------------------------
# scores
# ------------------------------------------------------------------------------------------
@dataclass
class EdgeScores:
    """Edge scores of one method with the metric values that frame them."""

    method: str
    """``eap``, ``eap-ig``, ``clean-corrupted`` or ``eap-ig-activations``."""
    graph: EdgeGraph
    scores: torch.Tensor
    """``[N_s, N_r]`` (float32; float64 for a float64 model): estimated metric change when the edge carries the corrupted value
    (batch mean); 0 where there is no edge (``graph.mask``)."""
    seconds: float
    """Wall time (all forward and backward passes)."""
    metric_clean: float
    metric_corrupt: float
    config: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    """Seconds per phase (``senders``, ``gradients``, ``scores``)."""

    def score(self, sender: str, receiver: str) -> float:
        return float(self.scores[self.graph.sender_index(sender), self.graph.receiver_index(receiver)])

    def top(self, k: int = 50) -> list[dict]:
        """The ``k`` edges of largest |score|, largest first."""
        top = self.scores.abs().masked_fill(~self.graph.mask, -1).flatten().topk(min(k, self.graph.n_edges))
        out = []
        for i, j in torch.stack(torch.unravel_index(top.indices, self.scores.shape), 1).tolist():
            u, v = self.graph.senders[i], self.graph.receivers[j]
            out.append({"edge": self.graph.edge_name(i, j), "sender": u.name, "receiver": v.name,
                        "score": float(self.scores[i, j]), "sender_hook": u.hook, "receiver_hook": v.hook})
        return out


def check_task(task) -> None:
    """Clear errors for tasks whose clean and corrupted prompts do not line up."""
    c, k = task.clean, task.corrupt
    if c.ndim != 2 or c.shape != k.shape:
        raise ValueError(f"clean tokens {tuple(c.shape)} and corrupted tokens {tuple(k.shape)} must both be "
                         "[B, T] with equal lengths: edge scores compare the two runs position by position")


def sender_groups(graph: EdgeGraph) -> list[tuple[str, list[int]]]:
    """``(hook, sender rows)`` per sender group written at one hook: the token embedding, each
    layer's heads (``attn.hook_z``), each MLP; the positional embedding is left out (same in both runs)."""
    out: dict[str, list[int]] = {}
    for i, n in enumerate(graph.senders):
        if n.kind != "pos":
            out.setdefault(n.hook, []).append(i)
    return list(out.items())


def _ig_activations(model, task, graph, weights, steps, max_tokens, fast, share):
    """EAP-IG-activations scores (module doc); returns ``(S, m_clean, logits_corrupt, replay)``.

    Per sender group at block ``L`` one :func:`receiver_grads` call (m steps, batched).  Fast path
    (``replay`` names it, else False): blocks ``0 .. L-1`` are not recomputed for the m copies.
    ``share="own"`` replays their clean output cached in the first forward (``"cached"``): the
    receivers they hold get no gradient, but no edge out of group n reads them (a sender of n writes
    after they read), so every score is exact.  ``share="all"`` needs those gradients: the prefix
    runs once per step batch at batch ``B`` with autograd (``"batch"``).  Memory of the cache: every
    block's output on the clean prompts, ``n_layers * B * T * d_model`` floats.
    """
    B = task.clean.shape[0]
    groups = sender_groups(graph)
    raw: dict[str, torch.Tensor] = {}
    replay = ("cached" if share == "own" else "batch") if fast else False
    prefix = PrefixCache(model) if replay == "cached" else None
    D, _, _, logits_c, logits_k = sender_differences(model, task, graph, weights, prefix, raw)
    if prefix is not None:  # leaves, so that block L's own receivers still get their gradient
        prefix.outs = {l: map_tensors(lambda t: t.detach().requires_grad_(t.is_floating_point()), o)
                       for l, o in prefix.outs.items()}
    D = D.flatten(1)
    last = fast and reads_last_position_only(task.metric, logits_c)
    alphas = torch.arange(1, steps + 1, dtype=torch.float64) / steps  # right Riemann, as the reference
    w = torch.full((steps,), 1.0 / steps, dtype=torch.float64)
    S = torch.zeros(len(graph.senders), len(graph.receivers), dtype=D.dtype, device=D.device)
    G_all = 0
    for hook, rows in groups:
        G = receiver_grads(model, task.clean, task.metric, graph, weights,
                           GradPath(alphas, w, raw[hook][:B], raw[hook][B:], at=hook, prefix=prefix,
                                    prefix_grad=replay == "batch", max_tokens=max_tokens, last_only=last),
                           fast)[0].flatten(1)
        if share == "own":
            S[rows] = D[rows].to(G.device) @ G.T / B
        else:
            G_all = G_all + G
    if share == "all":
        S = D.to(G_all.device) @ (G_all / len(groups)).T / B
    return S, task.metric(logits_c).double().mean().item(), logits_k, replay


def edge_attribution(model, task, method: str = "eap-ig", steps: int = 5, max_tokens: int = 4096,
                     fast: bool | None = None, share: str = "own") -> EdgeScores:
    """Score every edge with EAP (gradient at the clean input), EAP-IG, clean-corrupted or
    EAP-IG-activations (see the module doc).

    ``steps`` (EAP-IG, EAP-IG-activations): interpolation steps m (the paper's m = 5).  ``share``
    (EAP-IG-activations): ``own`` scores a sender with the gradients of its own group's
    interpolation, ``all`` with their mean over every group (hannamw/EAP-IG).  ``fast``:
    post-hoc per-head gradients and last-position logits (default on; ``INTERP_REFERENCE=1``
    or ``fast=False`` runs the reference path).
    """
    if method not in METHODS:
        raise ValueError(f"unknown edge attribution method {method!r}; choose from {METHODS}")
    if method in ("eap-ig", "eap-ig-activations") and steps < 1:
        raise ValueError(f"{method} needs steps >= 1, got {steps}")
    if share not in SHARES:
        raise ValueError(f"unknown share {share!r} for eap-ig-activations; choose from {SHARES}")
    check_task(task)
    t0 = time.perf_counter()
    fast = use_fast(fast)
    weights = layer_weights(model)
    graph = edge_graph(model, weights)
    config = {"steps": {"eap": 1, "clean-corrupted": 2}.get(method, steps), "quadrature": QUADRATURE[method],
              "max_tokens": max_tokens, "fast": fast,
              "direction": "noising: corrupted sender value into the clean run"}
    if method == "eap-ig-activations":
        S, m_clean, logits_k, config["prefix_replay"] = _ig_activations(model, task, graph, weights, steps,
                                                                        max_tokens, fast, share)
        config["share"] = share
        timings = {}
    else:
        S, m_clean, logits_k, timings = _input_scores(model, task, graph, weights, method, steps, max_tokens,
                                                      fast)
    seconds = time.perf_counter() - t0
    return EdgeScores(method=method, graph=graph, scores=S.cpu().masked_fill(~graph.mask, 0.0),
                      seconds=seconds, metric_clean=m_clean,
                      metric_corrupt=task.metric(logits_k).double().mean().item(), config=config,
                      timings=timings or {"total": seconds})


def _input_scores(model, task, graph, weights, method, steps, max_tokens, fast):
    """EAP, EAP-IG or clean-corrupted scores (module doc): ``(S, m_clean, logits_corrupt, timings)``."""
    t0 = time.perf_counter()
    raw: dict[str, torch.Tensor] = {}  # EAP reads the clean senders in its gradient pass (the clean run)
    reads = sender_reads(graph, raw) if method == "eap" else []
    if method == "eap":
        Z_k, logits_k = sender_outputs(model, task.corrupt, graph, weights)
        one = torch.ones(1, dtype=torch.float64)
        path = GradPath(one, one)
    else:
        D, e_c, e_k, logits_c, logits_k = sender_differences(model, task, graph, weights)  # sender 0 = hook_embed
        if method == "eap-ig":  # left Riemann sum: alpha_k = k/m, k = 0..m-1
            alphas = torch.arange(steps, dtype=torch.float64) / steps
        else:
            alphas = torch.tensor([0.0, 1.0], dtype=torch.float64)
        path = GradPath(alphas, torch.full_like(alphas, 1.0 / len(alphas)), e_c, e_k)
    t1 = time.perf_counter()
    path.max_tokens = max_tokens
    path.last_only = fast and reads_last_position_only(task.metric, logits_k)  # the run EAP has
    with scoped_hooks(model, fwd=reads):
        G, f_c = receiver_grads(model, task.clean, task.metric, graph, weights, path, fast)
    if method == "eap":
        D = Z_k - _sender_rows(raw, graph, weights, acc_dtype(model))
    m_clean = (f_c if method == "eap" else task.metric(logits_c)).double().mean().item()
    t2 = time.perf_counter()
    S = D.flatten(1).to(G.device) @ G.flatten(1).T / task.clean.shape[0]
    timings = {"senders": t1 - t0, "gradients": t2 - t1, "scores": time.perf_counter() - t2}
    return S, m_clean, logits_k, timings
