"""Edge patching (path patching of one edge): the ground truth that EAP and EAP-IG estimate.

Algorithm (Wang et al. 2022's path patching restricted to one edge; Conmy et al. 2023's ACDC
edge ablation; the intervention EAP linearises, Hanna et al. 2024):
    E(u -> v) = m(clean run with in_v <- in_v(x) + eps (z_u(x~) - z_u(x)) ... ) - m(x)
with eps = 1 the real edge patch: receiver v alone reads the residual stream in which sender u
carries its corrupted value; every other node, the skip connection and u's other readers see the
clean run, and v's downstream effects are recomputed.  A small eps gives the finite-difference
derivative whose limit is the EAP score (tests/test_edges.py).
1. One clean and one corrupted forward cache every sender's write ``z_u`` (edges.py).
2. ``k`` edges share one forward pass of ``k`` stacked copies of the clean batch; copy i moves its
   receiver's input by ``eps * (z_u(x~) - z_u(x))`` (:func:`edges.receiver_input_hooks`).
3. E_i = batch-mean metric of copy i - batch-mean clean metric.

Fast path (default; ``fast=False`` or ``INTERP_REFERENCE=1`` for the plain forward): edges
are sorted by receiver layer and the blocks before a batch's first receiver are replayed from the
clean run (fastpath.PrefixCache); when the metric reads only the last position, only that
position is unembedded.  Both skip work only; the test compares the two paths.

Cost: ``n_edges / k`` forward passes of ``k*B*T`` tokens (k = max_tokens // (B*T)), minus the
replayed prefix.  Memory: the sender cache ``N_s*B*T*d_model`` floats (two runs, kept as their
difference) and one ``k*B*T`` forward.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from interp.fastpath import use_fast
from interp.models import scoped_hooks

from .edges import (EdgeGraph, check_task, edge_graph, layer_weights, receiver_input_hooks,
                    sender_differences)
from .fastpath import PrefixCache, fast_forward, reads_last_position_only


@dataclass
class EdgePatchResult:
    """Metric change of patching each edge alone."""

    edges: list[tuple[int, int]]
    """(sender index, receiver index) per edge, in the order asked for ; named by ``graph.edge_name``."""
    effects: torch.Tensor
    """``[n_edges]`` float64: batch-mean metric(patched) - metric(clean)."""
    metric_clean: float
    metric_corrupt: float
    seconds: float
    graph: EdgeGraph
    config: dict = field(default_factory=dict)


def edge_patching(model, task, edges: Sequence, eps: float = 1.0, max_tokens: int = 4096,
                  fast: bool | None = None, progress: bool = False) -> EdgePatchResult:
    """Patch each edge alone in the clean run (see the module doc); ``edges`` as names
    (``("L3H2", "L5H1.q")`` or ``"L3H2->L5H1.q"``) or (sender, receiver) index pairs."""
    check_task(task)
    if max_tokens < 1:
        raise ValueError("max_tokens must be >= 1")
    t0 = time.perf_counter()
    fast = use_fast(fast)
    weights = layer_weights(model)
    graph = edge_graph(model, weights)
    pairs = graph.resolve(edges)
    if not pairs:
        raise ValueError("no edges given")
    prefix = PrefixCache(model) if fast else None
    D, _, _, logits_c, logits_k = sender_differences(model, task, graph, weights, prefix)
    m_clean = task.metric(logits_c).double().mean().item()
    last = fast and reads_last_position_only(task.metric, logits_c)
    B, T = task.clean.shape
    device = next(model.parameters()).device
    k_max = max(1, max_tokens // (B * T))
    order = sorted(range(len(pairs)), key=lambda i: graph.receivers[pairs[i][1]].layer)
    effects = torch.zeros(len(pairs), dtype=torch.float64)
    from tqdm.auto import tqdm

    with tqdm(total=len(pairs), desc="edge patching", leave=False, disable=not progress) as bar:
        for s in range(0, len(order), k_max):
            chunk = order[s:s + k_max]
            k = len(chunk)
            patches = {}
            for j in {pairs[i][1] for i in chunk}:  # each receiver: its copies and their senders' offsets
                copies = [c for c, i in enumerate(chunk) if pairs[i][1] == j]
                offset = eps * D[[pairs[chunk[c]][0] for c in copies]]
                patches[j] = (torch.tensor(copies, device=device), offset.to(device))  # the hook casts it
            first = graph.receivers[pairs[chunk[0]][1]].layer  # chunks are in receiver layer order
            hooks = receiver_input_hooks(model, graph, patches, B)
            with torch.no_grad(), scoped_hooks(model, fwd=hooks), fast_forward(model, prefix, k, first, last):
                logits = model(task.clean.to(device).repeat(k, 1))
            effects[chunk] = task.metric(logits).double().reshape(k, B).mean(1).cpu() - m_clean
            bar.update(k)
    return EdgePatchResult(
        edges=pairs, effects=effects, graph=graph, metric_clean=m_clean,
        metric_corrupt=task.metric(logits_k).double().mean().item(), seconds=time.perf_counter() - t0,
        config={"eps": eps, "max_tokens": max_tokens, "edges_per_pass": k_max, "fast": fast,
                "last_position_only": last},
    )
