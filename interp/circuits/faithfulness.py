"""Faithfulness of a circuit: how much of the behaviour survives when everything outside it is patched.

One definition for every circuit (Wang et al. 2022; Conmy et al. 2023; Hanna, Pezzelle & Belinkov 2024,
"Have Faith in Faithfulness"; docs/methods.md, Circuit discovery and Edge-circuit faithfulness):
run the clean prompts with every part *outside* the circuit C carrying its corrupted value; m(C) is
the batch-mean metric, and

    F(C) = (m(C) - m(empty)) / (m(full) - m(empty)).

**Components** (:class:`ComponentPatcher`, :func:`circuit_faithfulness`): each head / MLP outside C
takes its activation from the corrupted run (``source='corrupt'``) or the clean batch mean
(``source='mean'``); many sets share one batched forward (``attribution.patching.complement_metric``).
With every head and MLP patched the last position sees only corrupted information, so m(empty) =
m(corrupt) for tasks whose last token is shared.  The denoising check (:meth:`ComponentPatcher.denoise`)
runs the corrupted prompts with only C patched from clean.  Cost: one forward of B*T tokens per set,
``max_tokens`` tokens a pass; memory: clean and corrupted activations of every candidate component.

**Edges** (:func:`edge_circuit_faithfulness`; reference ``hannamw/EAP-IG`` ``src/eap/evaluate.py``):
C is a set of edges of the residual-stream graph (:mod:`interp.attribution.edges`); receiver v reads

    in_v = sum_u [ z_u(current run) if (u -> v) in C else z_u(x~) ]  (+ the constant biases)
         = resid_v(current) - sum_{u -> v not in C} (z_u(current) - z_u(x~))

where ``current`` is this patched run (a sender downstream of a patched receiver changes, and what
it writes is what its circuit edges carry).  m(full) = m(x) and m(empty) = m(x~) (every receiver
reads corrupted senders); both ends are also run as circuits in the same forward (``identity``):
they check the graph, the logits receiver included, covers the whole residual stream.  Removing one
edge from the full circuit is edge patching of that edge (eps = 1); tests check all three.
``c`` circuits run as ``c`` stacked copies of the clean batch.  Hooks on the sender outputs record
``D_cur [c, N_s, B, T, d] = z(current) - z(x~)``; at each receiver the offset
``-sum_u A[c, u, v] D_cur[c, u]`` (A = 1 on edges not in C; one batched matmul per layer) is added:
MLP and logits receivers at the input of ``ln2`` / ``ln_final`` (which feed nothing else), heads by
recomputing their own q/k/v slice ``W[h] ln1(x + offset_h) + b[h]`` (only in the copies where the
offset is not zero).  :func:`faithfulness_curve` evaluates top-n (or greedy) circuits of several
scorings at several sizes in the same batched runs.  Cost: one corrupted forward + ``c / k`` forwards
of ``k*B*T`` tokens (k copies per pass, bounded by ``max_tokens`` and 1 GB of ``D_cur``).  Memory:
``D_cur`` is ``c*N_s*B*T*d`` floats per pass (SmolLM2, B = 8, T = 16: 89 MB per copy) plus the masks
``c*N_s*N_r`` and the corrupted senders ``N_s*B*T*d``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from interp.attribution.components import cache_components, component_types
from interp.attribution.edges import (EdgeScores, check_task, edge_graph, layer_weights, sender_groups,
                                     sender_outputs)
from interp.attribution.fastpath import fast_forward, reads_last_position_only
from interp.attribution.patching import complement_metric, run_with_masks
from interp.fastpath import use_fast
from interp.models import scoped_hooks
from interp.models.hooks import parse_component, save_hook
from interp.models.modules import original

from .circuit import Circuit, as_edge_mask, greedy_circuit, top_n_circuit

Unit = tuple  # (component type name, layer, unit index tuple)


# ------------------------------------------------------------------------------------------
# component circuits
# ------------------------------------------------------------------------------------------
class ComponentPatcher:
    """m(S) for many component sets S (each a list of units), batched; counts the sets (``n_masks``)."""

    def __init__(self, model, task, types=("attn_head", "mlp"), source: str = "corrupt", max_tokens: int = 4096):
        self.model, self.task, self.source, self.max_tokens = model, task, source, max_tokens
        self.types = component_types(types)
        self.ac, _, logits_c = cache_components(model, task.clean, self.types)
        self.ak, _, logits_k = cache_components(model, task.corrupt, self.types)
        self.m_clean, self.m_corr = (task.metric(x).float().mean().item() for x in (logits_c, logits_k))
        self.unit_shapes = {t.name: tuple(self.ac[t.name][0].shape[2:2 + t.unit_axes]) for t in self.types}
        self.n_masks = 0
        self.full = self.empty = None

    def units(self) -> list[Unit]:
        """Every (type, layer, unit) in layer order (heads before the MLP of their layer)."""
        out = [(t.name, l, i) for t in self.types for l in range(self.model.cfg.n_layers)
               for i in np.ndindex(self.unit_shapes[t.name])]
        return sorted(out, key=lambda u: (u[1], u[0] != "attn_head", u[2]))

    def name(self, unit: Unit) -> str:
        """The hook address of a unit: ``blocks.L.attn.hook_z[h]``, ``blocks.L.hook_mlp_out``."""
        return component_types(unit[0])[0].hook_name(unit[1]) + "".join(f"[{i}]" for i in unit[2])

    def keep_mask(self, units) -> dict[str, torch.Tensor]:
        """Bool masks ``[L, *units]`` per type, True for the members."""
        L = self.model.cfg.n_layers
        mask = {n: torch.zeros((L, *s), dtype=torch.bool) for n, s in self.unit_shapes.items()}
        for name, l, idx in units:
            mask[name][(l, *idx)] = True
        return mask

    def metric(self, sets: Sequence[Sequence[Unit]]) -> list[float]:
        self.n_masks += len(sets)
        vals = complement_metric(self.model, self.task, [self.keep_mask(s) for s in sets], self.types,
                                 source=self.source, acts=(self.ac, self.ak), max_tokens=self.max_tokens)
        return vals.tolist()

    def ends(self, *measured: float) -> tuple[float, float]:
        """``(m(all), m(empty))``: ``measured`` (the two, from the caller's own batch) when given, else
        measured once; a ``ValueError`` when they do not differ."""
        if measured or self.full is None:
            full, empty = measured or self.metric([self.units(), []])
            # m(all) = m(empty) up to float32 rounding: nothing to attribute.  The two come from different
            # rows of batched float32 forwards, whose reduction order (and so the last bits) can depend on the
            # batch and the thread count: identical prompts measured 6e-8 apart at |m| = 0.82 on two threads;
            # 1e-5 relative is ~100x that.
            if abs(full - empty) <= 1e-5 * max(1.0, abs(full), abs(empty)):
                raise ValueError("the metric does not change between the full model and the all-patched "
                                 "model; nothing to attribute (are clean and corrupted prompts identical?)")
            self.full, self.empty = full, empty
        return self.full, self.empty

    def F(self, m: float) -> float:
        full, empty = self.ends()
        return (m - empty) / (full - empty)

    def circuit(self, units, faithfulness: float, t0: float, **evidence) -> Circuit:
        """The :class:`Circuit` of ``units`` (hook addresses, in their order) with its F and what this patcher
        measured: the ends, the denoising check, the sets run and the seconds since ``t0``."""
        return Circuit([self.name(u) for u in units], n_total=len(self.units()), faithfulness=faithfulness,
                       metric_full=self.full, metric_empty=self.empty, denoise_recovered=self.denoise(units),
                       n_masks=self.n_masks, seconds=time.perf_counter() - t0, **evidence)

    def denoise(self, units) -> float:
        """(m(corrupt run, ``units`` patched from clean) - m(corrupt)) / (m(clean) - m(corrupt))."""
        keep = self.keep_mask(units)
        logits = run_with_masks(self.model, self.task.corrupt, self.ac, {k: m[None] for k, m in keep.items()},
                                self.types)
        m_den, gap = self.task.metric(logits).float().mean().item(), self.m_clean - self.m_corr
        return (m_den - self.m_corr) / gap if abs(gap) > 1e-12 else float("nan")


def circuit_faithfulness(model, task, components: Sequence[str], source: str = "corrupt") -> dict:
    """F of a fixed circuit of heads and MLPs on ``task`` by real patching: ``{F, metric_full, metric_empty,
    metric_circuit, n}``."""
    ev = ComponentPatcher(model, task, source=source)
    full, empty, mc = ev.metric([ev.units(), [], [parse_component(c) for c in components]])
    ev.ends(full, empty)
    return {"F": ev.F(mc), "metric_full": full, "metric_empty": empty, "metric_circuit": mc, "n": task.n}


# ------------------------------------------------------------------------------------------
# edge circuits
# ------------------------------------------------------------------------------------------
@dataclass
class Faithfulness:
    """Metric of each circuit run, normalised between the corrupted and the clean run."""

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
    """``full_minus_clean`` / ``empty_minus_corrupt``: the all-edges and no-edges circuits run the same way,
    minus the clean / corrupted metric (0 up to rounding by definition)."""
    config: dict = field(default_factory=dict)


def _circuit_hooks(model, graph, weights, Zk, A, B, T) -> list:
    """Hooks for the ``c = len(A)`` stacked circuit copies of one pass (see the module doc)."""
    g, c, acc = graph, A.shape[0], Zk.dtype
    D = torch.zeros(c, len(g.senders), B, T, Zk.shape[-1], dtype=acc, device=Zk.device)
    W_o = [w.W_o.to(acc) for w in weights]
    s_stage = torch.tensor([n.stage for n in g.senders])
    n_prev = [int((s_stage < r.stage).sum()) for r in g.receivers]  # senders are in stage order
    xs: dict[int, torch.Tensor] = {}

    def offsets(js: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``([c, R, B, T, d] offsets, needs [c, R])`` for receivers ``js`` (all of one stage)."""
        n = n_prev[js[0]]
        a = A[:, :n, js].to(acc)  # [c, n, R]
        off = -torch.bmm(a.transpose(1, 2), D[:, :n].reshape(c, n, -1))
        return off.reshape(c, len(js), *D.shape[2:]), a.ne(0).any(1)

    def sender(rows, hook_name):
        def fn(x, hook):
            xx = x.to(acc).reshape(c, B, *x.shape[1:])
            if hook_name.endswith("hook_z"):
                val = torch.einsum("cbthe,hed->chbtd", xx, W_o[g.senders[rows[0]].layer])
            else:
                val = xx[:, None]
            D[:, rows] = val - Zk[rows]
        return fn

    layer_recv: dict[tuple[int, str], list[int]] = {}
    for j, r in enumerate(g.receivers):
        layer_recv.setdefault((r.layer, r.kind), []).append(j)
    hooks = [(f"blocks.{l}.ln1.hook_in", save_hook(xs, l)) for l in {l for l, k in layer_recv if k in "qkv"}]
    # the positional embedding is the same in every run: its rows of D stay 0 (sender_groups leaves it out)
    hooks += [(name, sender(rows, name)) for name, rows in sender_groups(g)]
    for (l, kind), js in layer_recv.items():
        if kind in ("mlp", "logits"):
            def add(x, hook, js=js):
                return x + offsets(js)[0][:, 0].reshape(x.shape).to(x.dtype)

            hooks.append((f"blocks.{l}.ln2.hook_in" if kind == "mlp" else "ln_final.hook_in", add))
        else:
            def head(act, hook, l=l, kind=kind, js=js):
                off, need = offsets(js)  # [c, R, B, T, d]
                x = xs[l].reshape(c, 1, B, *xs[l].shape[1:])
                h_idx = [g.receivers[j].head for j in js]
                W, b = getattr(weights[l], f"W_{kind}")[h_idx].to(acc), weights[l].b_qkv[kind][h_idx].to(acc)
                y = original(model.blocks[l].ln1)((x.to(acc) + off).to(x.dtype)).to(acc)
                new = torch.einsum("crbtd,red->cbtre", y, W) + b
                out = act.reshape(c, B, *act.shape[1:]).clone()
                keep = need[:, None, None, :, None]
                out[:, :, :, h_idx] = torch.where(keep, new.to(out.dtype), out[:, :, :, h_idx])
                return out.reshape(act.shape)

            hooks.append((f"blocks.{l}.attn.hook_{kind}", head))
    return hooks


def edge_circuit_faithfulness(model, task, circuits: Sequence, max_tokens: int = 4096, check_ends: bool = True,
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
    if check_ends:
        masks += [graph.mask.clone(), torch.zeros_like(graph.mask)]
    device = next(model.parameters()).device
    B, T = task.clean.shape
    Zk, logits_k = sender_outputs(model, task.corrupt, graph, weights)
    with torch.no_grad():
        logits_c = model(task.clean.to(device))
    mc, mk = (task.metric(x).double().mean().item() for x in (logits_c, logits_k))
    last = fast and reads_last_position_only(task.metric, logits_c)
    per_copy = len(graph.senders) * B * T * model.cfg.d_model * Zk.element_size() * 3
    k_max = int(max(1, min(max_tokens // (B * T), 1e9 // per_copy)))
    per = torch.zeros(len(masks), B, dtype=torch.float64)
    for s in range(0, len(masks), k_max):
        chunk = masks[s:s + k_max]
        A = torch.stack([graph.mask & ~m for m in chunk]).to(device)
        hooks = _circuit_hooks(model, graph, weights, Zk.to(device), A, B, T)
        with torch.no_grad(), scoped_hooks(model, fwd=hooks), fast_forward(model, None, len(chunk), 0, last):
            logits = model(task.clean.to(device).repeat(len(chunk), 1))
        per[s:s + len(chunk)] = task.metric(logits).double().reshape(len(chunk), B).cpu()
        del hooks  # this pass's D goes before the next one is made
    metrics = per.mean(1)
    span = mc - mk
    f = (metrics - mk) / span if span else torch.full_like(metrics, float("nan"))
    K = len(circuits)
    identity = {"full_minus_clean": metrics[K].item() - mc,
                "empty_minus_corrupt": metrics[K + 1].item() - mk} if check_ends else {}
    return Faithfulness(n_edges=[int(m.sum()) for m in masks[:K]], metrics=metrics[:K],
                        f_norm=f[:K], metric_clean=mc, metric_corrupt=mk, seconds=time.perf_counter() - t0,
                        per_prompt=per[:K], identity=identity,
                        config={"copies_per_pass": k_max, "last_position_only": last, "fast": fast,
                                "max_tokens": max_tokens,
                                "direction": "edges outside the circuit carry the corrupted run"})


# ------------------------------------------------------------------------------------------
# the faithfulness curve
# ------------------------------------------------------------------------------------------
SELECTIONS = {"top-n": [("", top_n_circuit)], "greedy": [(" greedy", greedy_circuit)]}
SELECTIONS["both"] = SELECTIONS["top-n"] + SELECTIONS["greedy"]
"""The edge circuits :func:`faithfulness_curve` measures: (suffix of the curve's key, selection)."""


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


def faithfulness_curve(model, task, scores: Sequence[EdgeScores], sizes: Sequence[int], prune: bool = True,
                       max_tokens: int = 4096, selection: str = "top-n", fast: bool | None = None
                       ) -> FaithfulnessCurve:
    """Top-n (or ``selection="greedy"``) circuits, pruned, of each method's scores at each size in
    ``sizes``, evaluated together; with both selections the keys read ``method`` and ``method greedy``.
    ``max_tokens`` and ``fast``: as :func:`edge_circuit_faithfulness` (``INTERP_REFERENCE=1`` switches
    the fast path off)."""
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; choose from {tuple(SELECTIONS)}")
    sizes = [int(n) for n in sizes]
    if not scores or not sizes:
        raise ValueError("faithfulness_curve needs at least one EdgeScores and at least one circuit size")
    t0 = time.perf_counter()
    runs = [(s.method + suffix, s, pick) for s in scores for suffix, pick in SELECTIONS[selection]]
    circuits = [pick(s, n, prune) for _, s, pick in runs for n in sizes]
    res = edge_circuit_faithfulness(model, task, circuits, max_tokens=max_tokens, fast=fast)
    curves, k = {}, len(sizes)
    for a, (name, _, _) in enumerate(runs):
        part, cs = slice(a * k, (a + 1) * k), circuits[a * k:(a + 1) * k]
        curves[name] = {"n_requested": sizes, "n_edges": [c.n_edges for c in cs],
                        "n_nodes": [len(c.components) for c in cs], "metric": res.metrics[part].tolist(),
                        "f_norm": res.f_norm[part].tolist()}
    return FaithfulnessCurve(curves, res.metric_clean, res.metric_corrupt, res.identity, time.perf_counter() - t0,
                             config={"prune": prune, "selection": selection, **res.config})
