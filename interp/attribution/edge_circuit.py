"""Edge circuits: faithfulness of a set of edges, top-n selection with dead-end pruning, and the curve.

Faithfulness (Hanna, Pezzelle & Belinkov 2024, "Have Faith in Faithfulness"; reference
``hannamw/EAP-IG`` ``src/eap/evaluate.py``; docs/methods.md, Edge-circuit faithfulness).  A circuit C is a set of
edges of the residual-stream graph (edges.py).  In the circuit run every edge outside C carries its
corrupted value: receiver v reads

    in_v = sum_u [ z_u(current run) if (u -> v) in C else z_u(x~) ]  (+ the constant biases)
         = resid_v(current) - sum_{u -> v not in C} (z_u(current) - z_u(x~))

where ``current`` is this patched run (a sender downstream of a patched receiver changes, and what
it writes is what its circuit edges carry).  The clean tokens are run; ``z_u(x~)`` comes from one
corrupted forward.  Then ``m(C)`` is the batch-mean metric and

    F_norm(C) = (m(C) - m(empty)) / (m(full) - m(empty)),

with m(full) = m(x) (no edge patched) and m(empty) = m(x~) (every receiver reads corrupted senders,
so every sender writes its corrupted value and the final residual is the corrupted one).  Both ends
are also run as circuits in the same forward and reported (``identity_error``): they check the
graph (the logits receiver included) covers the whole residual stream.  Removing one edge from the
full circuit is edge patching of that edge (edge_patching.py, eps = 1); tests check all three.

Algorithm: ``c`` circuits run as ``c`` stacked copies of the clean batch in one forward.  Hooks on
the sender outputs (``hook_embed``, ``hook_pos_embed``, ``attn.hook_z`` x W_O, ``hook_mlp_out``)
record ``D_cur [c, N_s, B, T, d] = z(current) - z(x~)``; at each receiver the offset
``-sum_u A[c, u, v] D_cur[c, u]`` (A = 1 on edges not in C; one batched matmul per layer) is added to
its input: MLP and logits receivers at the input of ``ln2`` / ``ln_final`` (which feed nothing
else), heads by recomputing their own q/k/v slice ``W[h] ln1(x + offset_h) + b[h]`` (replaced only
in the copies where the offset is not zero: the full circuit is the clean run up to the rounding of a
larger batch, 1e-6 in float32 on SmolLM2).

Selection: top-n edges by |score| (:func:`top_n_circuit`), then :func:`prune_circuit` keeps only the
edges on some path embeddings -> ... -> logits (a node reached by no circuit edge writes its
corrupted value; one whose output reaches no kept receiver changes nothing): pruning leaves m(C)
unchanged (tested) and makes the edge count honest.  :func:`greedy_circuit` grows the circuit from
the logits backwards instead (the reference's ``greedy``).

Cost: one corrupted forward + ``c / k`` forwards of ``k*B*T`` tokens (k copies per pass, bounded by
``max_tokens`` and ``max_bytes``); per layer a ``[R, N_s] x [N_s, B*T*d]`` matmul per copy (R = 15
receivers per SmolLM2 layer).  Memory: ``D_cur`` is ``c*N_s*B*T*d`` floats per pass (SmolLM2, B = 8,
T = 16: 89 MB per copy) plus the masks ``c*N_s*N_r`` and the corrupted senders ``N_s*B*T*d``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from interp.fastpath import use_fast
from interp.models import scoped_hooks

from .edges import (EdgeGraph, EdgeScores, _linear_map, _orig, acc_dtype, check_task, edge_graph,
                    layer_weights, sender_outputs)
from .fastpath import fast_forward, reads_last_position_only


# ------------------------------------------------------------------------------------------
# circuits: edge sets, selection and pruning
# ------------------------------------------------------------------------------------------
@dataclass
class Circuit:
    """A set of edges of ``graph`` (bool ``[N_s, N_r]``, a subset of ``graph.mask``)."""

    graph: EdgeGraph
    edges: torch.Tensor
    label: str = ""
    n_requested: int | None = None
    """The n of a top-n circuit before pruning."""

    @property
    def n_edges(self) -> int:
        return int(self.edges.sum())

    def nodes(self) -> list[str]:
        """Components touched by an edge: sender names and receiver components (``L3H2.q`` -> ``L3H2``;
        a grouped k/v receiver ``L3KV1.k`` stays as is), in graph order."""
        s = [self.graph.senders[i].name for i in self.edges.any(1).nonzero().flatten().tolist()]
        r = [self.graph.receivers[j].name.split(".")[0] for j in self.edges.any(0).nonzero().flatten().tolist()]
        return list(dict.fromkeys(s + r))

    def edge_names(self) -> list[str]:
        return [self.graph.edge_name(i, j) for i, j in self.edges.nonzero().tolist()]


def as_edge_mask(graph: EdgeGraph, circuit) -> torch.Tensor:
    """``circuit`` (a :class:`Circuit`, a bool ``[N_s, N_r]`` tensor or a sequence of edges as
    ``"u->v"`` / name pairs / index pairs) as a bool mask; a ``ValueError`` names a non-edge."""
    if isinstance(circuit, Circuit):
        circuit = circuit.edges
    if isinstance(circuit, torch.Tensor):
        if circuit.shape != graph.mask.shape or circuit.dtype != torch.bool:
            raise ValueError(f"circuit mask must be bool {tuple(graph.mask.shape)} (senders x receivers), "
                             f"got {circuit.dtype} {tuple(circuit.shape)}")
        if (circuit & ~graph.mask).any():
            i, j = (circuit & ~graph.mask).nonzero()[0].tolist()
            raise ValueError(f"circuit mask contains {graph.edge_name(i, j)}, which is not an edge of the graph")
        return circuit.clone()
    m = torch.zeros_like(graph.mask)
    for i, j in graph.resolve(list(circuit)):
        m[i, j] = True
    return m


def _components(graph: EdgeGraph) -> list[list[int]]:
    """Per receiver, the sender indices of the component(s) it feeds (empty for the logits)."""
    idx = {(n.kind, n.layer, n.head): i for i, n in enumerate(graph.senders)}
    group = graph.n_heads // graph.n_kv_heads
    out = []
    for r in graph.receivers:
        if r.kind == "q":
            out.append([idx[("head", r.layer, r.head)]])
        elif r.kind in ("k", "v"):
            out.append([idx[("head", r.layer, h)] for h in range(r.head * group, (r.head + 1) * group)])
        elif r.kind == "mlp":
            out.append([idx[("mlp", r.layer, None)]])
        else:
            out.append([])
    return out


def prune_circuit(graph: EdgeGraph, edges: torch.Tensor) -> torch.Tensor:
    """The edges of ``edges`` that lie on a path from the embeddings to the logits.

    Forward: the embeddings are live; a receiver is live if a circuit edge reaches it from a live
    sender; a component (head, MLP) is live if one of its receivers is (a head reads its q and its
    key/value group's k and v).  Backward: the logits are live; a sender is live if a circuit edge
    leads from it to a live receiver; a receiver is live if its component is.  Kept:
    ``edges & forward_live[u] & backward_live[v]``.
    """
    edges = as_edge_mask(graph, edges)
    comp = _components(graph)
    s_stage = [n.stage for n in graph.senders]
    r_stage = [n.stage for n in graph.receivers]
    stages = sorted(set(s_stage) | set(r_stage))
    fwd_s = torch.tensor([n.layer == -1 for n in graph.senders])
    fwd_r = torch.zeros(len(graph.receivers), dtype=torch.bool)
    feeds: dict[int, list[int]] = {}
    for j, cs in enumerate(comp):
        for i in cs:
            feeds.setdefault(i, []).append(j)
    for s in stages:
        for j in (j for j, st in enumerate(r_stage) if st == s):
            fwd_r[j] = bool((edges[:, j] & fwd_s).any())
        for i in (i for i, st in enumerate(s_stage) if st == s and graph.senders[i].layer >= 0):
            fwd_s[i] = bool(fwd_r[feeds.get(i, [])].any())
    back_r = torch.tensor([r.kind == "logits" for r in graph.receivers])
    back_s = torch.zeros(len(graph.senders), dtype=torch.bool)
    for s in reversed(stages):
        for i in (i for i, st in enumerate(s_stage) if st == s):
            back_s[i] = bool((edges[i] & back_r).any())
        for j in (j for j, st in enumerate(r_stage) if st == s and comp[j]):
            back_r[j] = bool(back_s[comp[j]].any())
    return edges & fwd_s[:, None] & back_r[None, :]


def top_n_circuit(scores: EdgeScores, n: int, prune: bool = True, absolute: bool = True) -> Circuit:
    """The ``n`` edges of largest |score| (``absolute=False``: largest score), then pruned."""
    g = scores.graph
    if not 0 <= n <= g.n_edges:
        raise ValueError(f"top_n_circuit: n must lie in 0..{g.n_edges} (the number of edges), got {n}")
    s = scores.scores.abs() if absolute else scores.scores
    flat = s.double().masked_fill(~g.mask, float("-inf")).reshape(-1)
    m = torch.zeros(flat.numel(), dtype=torch.bool)
    if n:
        m[flat.topk(n).indices] = True
    m = m.reshape(g.mask.shape)
    return Circuit(g, prune_circuit(g, m) if prune else m, f"{scores.method} top {n}", n)


def greedy_circuit(scores: EdgeScores, n: int, prune: bool = True, absolute: bool = True) -> Circuit:
    """Greedy selection from the logits backwards (hannamw/EAP-IG ``Graph.apply_greedy``): start
    with the edges into the logits as candidates; repeatedly add the candidate of largest |score|;
    when that adds a new component (head or MLP), the edges into its receivers (a head's q and its
    key/value group's k and v) become candidates.  Every chosen edge leads to the logits; pruning
    then drops the ones not reached from the embeddings."""
    import heapq

    g = scores.graph
    if not 0 <= n <= g.n_edges:
        raise ValueError(f"greedy_circuit: n must lie in 0..{g.n_edges} (the number of edges), got {n}")
    s = (scores.scores.abs() if absolute else scores.scores).double()
    recv_of: dict[int, list[int]] = {}
    for j, cs in enumerate(_components(g)):
        for i in cs:
            recv_of.setdefault(i, []).append(j)
    heap: list = []
    seen_r: set[int] = set()

    def push(j):
        if j not in seen_r:
            seen_r.add(j)
            for i in g.mask[:, j].nonzero().flatten().tolist():
                heapq.heappush(heap, (-float(s[i, j]), i, j))

    push(g.receiver_index("logits"))
    m = torch.zeros_like(g.mask)
    in_graph: set[int] = set()
    while n > 0 and heap:
        _, i, j = heapq.heappop(heap)
        m[i, j] = True
        n -= 1
        if i not in in_graph:
            in_graph.add(i)
            for jj in recv_of.get(i, []):
                push(jj)
    return Circuit(g, prune_circuit(g, m) if prune else m, f"{scores.method} greedy {int(m.sum())}", int(m.sum()))


# ------------------------------------------------------------------------------------------
# the circuit run
# ------------------------------------------------------------------------------------------
@dataclass
class Faithfulness:
    """Metric of each circuit run, normalised between the corrupted and the clean run."""

    labels: list[str]
    n_edges: list[int]
    metrics: torch.Tensor
    """``[K]`` float64: batch-mean metric of each circuit run."""
    f_norm: torch.Tensor
    """``[K]``: (m(C) - m(x~)) / (m(x) - m(x~))."""
    metric_clean: float
    metric_corrupt: float
    seconds: float
    per_prompt: torch.Tensor | None = None
    """``[K, B]`` per-prompt metrics."""
    identity: dict = field(default_factory=dict)
    """``full`` / ``empty``: the all-edges and no-edges circuits run the same way, and their
    distance to the clean / corrupted metric (0 up to rounding by definition)."""
    config: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"labels": self.labels, "n_edges": self.n_edges, "metrics": self.metrics.tolist(),
                "f_norm": self.f_norm.tolist(), "metric_clean": self.metric_clean,
                "metric_corrupt": self.metric_corrupt, "seconds": self.seconds, "identity": self.identity,
                "config": self.config}


class _CircuitRun:
    """Hooks for ``c`` stacked circuit copies (see the module doc)."""

    def __init__(self, model, graph, weights, Zk, A, B, T):
        self.model, self.graph, self.Zk, self.A, self.B, self.T = model, graph, Zk, A, B, T
        self.c = A.shape[0]
        self.acc = Zk.dtype
        self.D = torch.zeros(self.c, len(graph.senders), B, T, Zk.shape[-1], dtype=self.acc, device=Zk.device)
        self.W_o = [w.W_o.to(self.acc) for w in weights]
        self.n_prev = {}
        s_stage = torch.tensor([n.stage for n in graph.senders])
        for j, r in enumerate(graph.receivers):
            self.n_prev[j] = int((s_stage < r.stage).sum())  # senders are in stage order
        self.xs: dict[int, torch.Tensor] = {}
        self.qkv = {}
        ref = next(model.parameters())
        for l, blk in enumerate(model.blocks):
            for k in "qkv":
                W, b = _linear_map(_orig(getattr(blk.attn, k)), model.cfg.d_model, ref)
                dh = model.cfg.d_head
                self.qkv[(l, k)] = (W.T.reshape(-1, dh, W.shape[0]), b.reshape(-1, dh))

    def offsets(self, js: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``([c, R, B, T, d] offsets, needs [c, R])`` for receivers ``js`` (all of one stage)."""
        n = self.n_prev[js[0]]
        a = self.A[:, :n, js].to(self.acc)  # [c, n, R]
        off = -torch.bmm(a.transpose(1, 2), self.D[:, :n].reshape(self.c, n, -1))
        return off.reshape(self.c, len(js), *self.D.shape[2:]), a.ne(0).any(1)

    def hooks(self) -> list:
        g, B, c = self.graph, self.B, self.c
        hooks = []
        by_hook: dict[str, list[int]] = {}
        for i, n in enumerate(g.senders):
            by_hook.setdefault(n.hook, []).append(i)

        def sender(rows, hook_name):
            def fn(x, hook):
                if hook_name.endswith("hook_z"):
                    l = int(hook_name.split(".")[1])
                    z = x.to(self.acc).reshape(c, B, *x.shape[1:])
                    val = torch.einsum("cbthe,hed->chbtd", z, self.W_o[l])
                else:
                    xx = x.to(self.acc)
                    if xx.shape[0] != c * B:  # a positional embedding broadcast over the batch
                        xx = xx.expand(B, *xx.shape[1:]).repeat(c, *[1] * (xx.ndim - 1))
                    val = xx.reshape(c, B, *x.shape[1:])[:, None]
                self.D[:, rows] = val - self.Zk[rows]
            return fn

        for name, rows in by_hook.items():
            hooks.append((name, sender(rows, name)))
        layer_recv: dict[tuple[int, str], list[int]] = {}
        for j, r in enumerate(g.receivers):
            layer_recv.setdefault((r.layer, r.kind), []).append(j)
        for (l, kind), js in layer_recv.items():
            if kind in ("mlp", "logits"):
                def add(x, hook, js=js):
                    off, need = self.offsets(js)
                    return x + off[:, 0].reshape(x.shape).to(x.dtype)

                hooks.append((f"blocks.{l}.ln2.hook_in" if kind == "mlp" else "ln_final.hook_in", add))
            else:
                def head(act, hook, l=l, kind=kind, js=js):
                    off, need = self.offsets(js)  # [c, R, B, T, d]
                    x = self.xs[l].reshape(c, 1, B, *self.xs[l].shape[1:])
                    ln = _orig(self.model.blocks[l].ln1)
                    h_idx = [g.receivers[j].head for j in js]
                    W, b = self.qkv[(l, kind)]
                    y = ln((x.to(self.acc) + off).to(x.dtype)).to(self.acc)
                    new = torch.einsum("crbtd,red->cbtre", y, W[h_idx].to(self.acc)) + b[h_idx].to(self.acc)
                    out = act.reshape(c, B, *act.shape[1:]).clone()
                    sel = out[:, :, :, h_idx]
                    keep = need[:, None, None, :, None]
                    out[:, :, :, h_idx] = torch.where(keep, new.to(out.dtype), sel)
                    return out.reshape(act.shape)

                hooks.append((f"blocks.{l}.attn.hook_{kind}", head))
        for l in sorted({l for (l, k) in layer_recv if k in "qkv"}):
            def save(x, hook, l=l):
                self.xs[l] = x

            hooks.insert(0, (f"blocks.{l}.ln1.hook_in", save))
        return hooks


def edge_circuit_faithfulness(model, task, circuits: Sequence, labels: Sequence[str] | None = None,
                              max_tokens: int = 4096, max_bytes: float = 1e9, check_ends: bool = True,
                              fast: bool | None = None) -> Faithfulness:
    """m(C) and F_norm(C) for each circuit (see the module doc), as stacked copies in few forwards.

    ``circuits``: each a :class:`Circuit`, a bool ``[N_s, N_r]`` mask or a list of edges.
    ``check_ends`` also runs the full and the empty circuit (``result.identity``).  ``fast``:
    unembed only the last position when the metric reads only that one (default on;
    ``INTERP_REFERENCE=1`` or ``fast=False``: the full logits, as in edges.py).
    """
    fast = use_fast(fast)
    check_task(task)
    if isinstance(circuits, (Circuit, torch.Tensor)):
        raise ValueError("circuits must be a sequence of circuits (wrap a single one in a list)")
    t0 = time.perf_counter()
    weights = layer_weights(model)
    graph = edge_graph(model, weights)
    masks = [as_edge_mask(graph, c) for c in circuits]
    if labels is None:
        labels = [c.label if isinstance(c, Circuit) and c.label else f"circuit {i}" for i, c in enumerate(circuits)]
    if len(labels) != len(masks):
        raise ValueError(f"got {len(labels)} labels for {len(masks)} circuits")
    labels = list(labels)
    if check_ends:
        masks += [graph.mask.clone(), torch.zeros_like(graph.mask)]
    device = next(model.parameters()).device
    B, T = task.clean.shape
    Zk, logits_k = sender_outputs(model, task.corrupt, graph, weights)
    with torch.no_grad():
        logits_c = model(task.clean.to(device))
    m_clean = task.metric(logits_c).double().cpu()
    m_corr = task.metric(logits_k).double().cpu()
    last = fast and reads_last_position_only(task.metric, logits_c)
    per_copy = len(graph.senders) * B * T * model.cfg.d_model * Zk.element_size() * 3
    k_max = int(max(1, min(max_tokens // (B * T), max_bytes // per_copy)))
    per = torch.zeros(len(masks), B, dtype=torch.float64)
    for s in range(0, len(masks), k_max):
        chunk = masks[s:s + k_max]
        A = torch.stack([graph.mask & ~m for m in chunk]).to(device)
        run = _CircuitRun(model, graph, weights, Zk.to(device), A, B, T)
        with torch.no_grad(), scoped_hooks(model, fwd=run.hooks()), fast_forward(model, None, len(chunk), 0, last):
            logits = model(task.clean.to(device).repeat(len(chunk), 1))
        per[s:s + len(chunk)] = task.metric(logits).double().reshape(len(chunk), B).cpu()
        del run
    mc, mk = m_clean.mean().item(), m_corr.mean().item()
    metrics = per.mean(1)
    span = mc - mk
    f = (metrics - mk) / span if span else torch.full_like(metrics, float("nan"))
    identity = {}
    K = len(labels)
    if check_ends:
        identity = {"full": metrics[K].item(), "empty": metrics[K + 1].item(),
                    "full_minus_clean": metrics[K].item() - mc, "empty_minus_corrupt": metrics[K + 1].item() - mk}
    return Faithfulness(labels=labels, n_edges=[int(m.sum()) for m in masks[:K]], metrics=metrics[:K],
                        f_norm=f[:K], metric_clean=mc, metric_corrupt=mk, seconds=time.perf_counter() - t0,
                        per_prompt=per[:K], identity=identity,
                        config={"copies_per_pass": k_max, "last_position_only": last, "fast": fast,
                                "max_tokens": max_tokens,
                                "direction": "edges outside the circuit carry the corrupted run"})


# ------------------------------------------------------------------------------------------
# the faithfulness curve
# ------------------------------------------------------------------------------------------
@dataclass
class FaithfulnessCurve:
    """F_norm vs circuit size, one curve per scoring method, all from one batched circuit run."""

    curves: dict
    """``{method: {"n_requested", "n_edges", "n_nodes", "metric", "f_norm"}}`` (lists, one entry per size)."""
    metric_clean: float
    metric_corrupt: float
    identity: dict
    seconds: float
    config: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"curves": self.curves, "metric_clean": self.metric_clean, "metric_corrupt": self.metric_corrupt,
                "identity": self.identity, "seconds": self.seconds, "config": self.config}


def faithfulness_curve(model, task, scores: Sequence[EdgeScores], sizes: Sequence[int], prune: bool = True,
                       max_tokens: int = 4096, max_bytes: float = 1e9, selection: str = "top-n",
                       fast: bool | None = None) -> FaithfulnessCurve:
    """Top-n (or ``selection="greedy"``) circuits, pruned, of each method's scores at each size in
    ``sizes``, evaluated together; with both selections the keys read ``method`` and ``method greedy``.
    ``fast``: as :func:`edge_circuit_faithfulness` (``INTERP_REFERENCE=1`` switches it off)."""
    if selection not in ("top-n", "greedy", "both"):
        raise ValueError(f"unknown selection {selection!r}; choose from top-n, greedy, both")
    if not scores:
        raise ValueError("faithfulness_curve needs at least one EdgeScores")
    sizes = [int(n) for n in sizes]
    if not sizes:
        raise ValueError("faithfulness_curve needs at least one circuit size")
    n_all = scores[0].graph.n_edges
    bad = [n for n in sizes if not 0 <= n <= n_all]
    if bad:
        raise ValueError(f"circuit sizes {bad} out of range 0..{n_all} (the number of edges)")
    t0 = time.perf_counter()
    pickers = ([("", top_n_circuit)] if selection != "greedy" else []) + (
        [(" greedy", greedy_circuit)] if selection != "top-n" else [])
    runs = [(s.method + suffix, s, pick) for s in scores for suffix, pick in pickers]
    circuits = [pick(s, n, prune) for _, s, pick in runs for n in sizes]
    res = edge_circuit_faithfulness(model, task, circuits, max_tokens=max_tokens, max_bytes=max_bytes, fast=fast)
    curves = {}
    for a, (name, _, _) in enumerate(runs):
        part = range(a * len(sizes), (a + 1) * len(sizes))
        curves[name] = {"n_requested": sizes, "n_edges": [circuits[i].n_edges for i in part],
                            "n_nodes": [len(circuits[i].nodes()) for i in part],
                            "metric": [res.metrics[i].item() for i in part],
                            "f_norm": [res.f_norm[i].item() for i in part]}
    return FaithfulnessCurve(curves, res.metric_clean, res.metric_corrupt, res.identity, time.perf_counter() - t0,
                             config={"prune": prune, "selection": selection, **res.config})
