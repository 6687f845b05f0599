"""The one circuit type: a set of components (or of edges) that carries a behaviour, with its evidence.

A component circuit (:func:`~interp.circuits.discovery.discover_circuit`,
:func:`~interp.circuits.discovery.search_circuit`) lists its members by hook address
(``blocks.9.attn.hook_z[3]``, ``blocks.4.hook_mlp_out``; display ``L9H3`` / ``MLP4`` via
:func:`interp.models.hooks.component_label`).  An edge circuit (``top_n_circuit``, ``greedy_circuit``)
is a bool mask ``[N_s, N_r]`` over the residual-stream graph of :mod:`interp.attribution.edges`;
its ``components`` are the nodes its edges touch.  Both are judged by the faithfulness functions of
:mod:`interp.circuits.faithfulness`: F = (m(C) - m(empty)) / (m(full) - m(empty)), everything outside
the circuit carrying its corrupted (or mean) value.

Edge selection (Hanna, Pezzelle & Belinkov 2024; reference ``hannamw/EAP-IG`` ``src/eap/graph.py``;
docs/methods.md, Edge-circuit faithfulness): top-n edges by |score| (:func:`top_n_circuit`), then
:func:`prune_circuit` keeps only the edges on some path embeddings -> ... -> logits (a node reached
by no circuit edge writes its corrupted value; one whose output reaches no kept receiver changes
nothing): pruning leaves m(C) unchanged (tested) and makes the edge count honest.
:func:`greedy_circuit` grows the circuit from the logits backwards instead (the reference's
``greedy``).  Cost: O(stages x N_s x N_r) boolean work for pruning, O(E log E) for the greedy heap.
"""

from __future__ import annotations

import heapq
import math
from itertools import zip_longest
from dataclasses import dataclass, field

import torch

from interp.attribution.edges import EdgeGraph, EdgeScores
from interp.models.hooks import head_label, parse_component


@dataclass
class Circuit:
    """A circuit and the evidence for it (fields a search did not measure keep their defaults)."""

    components: list[str]
    """Members: hook addresses, best-ranked first (top-k) or in layer order (greedy search); for an
    edge circuit the graph nodes its edges touch (``embed``, ``L3H2``, ``MLP4``, ``logits``)."""
    n_total: int = 0
    """Number of candidate components (edge circuits: edges of the graph)."""
    faithfulness: float = math.nan
    """F of the circuit on the discovery prompts, measured by patching everything outside it."""
    metric_full: float = math.nan
    """m(all): every component running (the clean run)."""
    metric_empty: float = math.nan
    """m(empty): every component patched."""
    denoise_recovered: float = math.nan
    """Verification: (m(corrupt run, circuit patched from clean) - m(corrupt)) / (m(clean) - m(corrupt))."""
    scores: list[float] = field(default_factory=list)
    """The ranking method's score of each member (empty when there was no ranking)."""
    curve_sizes: list[int] = field(default_factory=list)
    """Circuit sizes the search measured (top-k: ascending; greedy: in the order it reached them)."""
    curve_faithfulness: list[float] = field(default_factory=list)
    """F at each of those sizes."""
    method: str = ""
    """What ranked or ordered the members (an attribution method, or ``greedy``)."""
    share: float = math.nan
    """The F the circuit had to keep."""
    threshold: float = math.nan
    """Greedy search: share + margin, the F every accepted removal kept."""
    minimal: bool = False
    """Greedy search: the last sweep measured every single removal below the threshold (1-minimal)."""
    single_removal_F: dict[str, float] = field(default_factory=dict)
    """Greedy search: member -> F of the circuit without it (from the last sweep)."""
    n_masks: int = 0
    """Patched runs the search evaluated."""
    seconds: float = 0.0
    config: dict = field(default_factory=dict)
    graph: EdgeGraph | None = None
    """Edge circuits: the graph the mask indexes."""
    edges: torch.Tensor | None = None
    """Edge circuits: bool ``[N_s, N_r]``, a subset of ``graph.mask``."""

    @classmethod
    def of_edges(cls, graph: EdgeGraph, edges: torch.Tensor):
        """An edge circuit; its components are the nodes touched by an edge (receivers ``L3H2.q`` ->
        ``L3H2``; a grouped k/v receiver ``L3KV1.k`` stays as is), in graph order."""
        s = [graph.senders[i].name for i in edges.any(1).nonzero().flatten().tolist()]
        r = [graph.receivers[j].name.split(".")[0] for j in edges.any(0).nonzero().flatten().tolist()]
        return cls(list(dict.fromkeys(s + r)), n_total=graph.n_edges, graph=graph, edges=edges)

    @property
    def n_edges(self) -> int:
        return int(self.edges.sum()) if self.edges is not None else 0

    def edge_names(self) -> list[str]:
        return [self.graph.edge_name(i, j) for i, j in self.edges.nonzero().tolist()] if self.edges is not None else []

    def to_json(self) -> dict:
        """Members (with their scores where ranked; None each without), their number and ``fraction`` of all
        candidates, and the evidence; an edge circuit lists its edges by name."""
        skip = {"components", "scores", "graph", "edges", "curve_sizes", "curve_faithfulness"}
        k = len(self.components)
        out = {"components": [{"name": c, "score": s} for c, s in zip_longest(self.components, self.scores)],
               "n_components": k, "fraction": k / self.n_total if self.n_total else math.nan}
        out.update({k: v for k, v in self.__dict__.items() if k not in skip})
        if self.edges is not None:
            out["edges"] = self.edge_names()
        return out


# ------------------------------------------------------------------------------------------
# edge circuits: selection and pruning
# ------------------------------------------------------------------------------------------
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


def _inputs(graph: EdgeGraph) -> torch.Tensor:
    """Bool ``[N_r, N_s]``: receiver j is an input of the component sender i writes for (a head reads
    its q and its key/value group's k and v, an MLP its input; the logits feed no sender)."""
    idx = {n.name: i for i, n in enumerate(graph.senders)}
    group = graph.n_heads // graph.n_kv_heads
    out = torch.zeros(len(graph.receivers), len(graph.senders), dtype=torch.bool)
    for j, r in enumerate(graph.receivers):
        heads = [r.head] if r.kind == "q" else range(r.head * group, (r.head + 1) * group) \
            if r.kind in ("k", "v") else []
        names = [head_label(r.layer, h) for h in heads] or ([r.name] if r.kind == "mlp" else [])
        out[j, [idx[n] for n in names]] = True
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
    inputs = _inputs(graph)
    s_stage = torch.tensor([n.stage for n in graph.senders])
    r_stage = torch.tensor([n.stage for n in graph.receivers])
    stages = torch.cat([s_stage, r_stage]).unique().tolist()  # sorted
    fwd_s = torch.tensor([n.layer == -1 for n in graph.senders])
    fwd_r = torch.zeros(len(graph.receivers), dtype=torch.bool)
    for s in stages:
        r, i = r_stage == s, s_stage == s
        fwd_r[r] = (edges[:, r] & fwd_s[:, None]).any(0)
        fwd_s[i] |= (inputs[:, i] & fwd_r[:, None]).any(0)
    back_r = torch.tensor([r.kind == "logits" for r in graph.receivers])
    back_s = torch.zeros(len(graph.senders), dtype=torch.bool)
    for s in reversed(stages):
        r, i = r_stage == s, s_stage == s
        back_s[i] = (edges[i] & back_r).any(1)
        back_r[r] |= (inputs[r] & back_s).any(1)
    return edges & fwd_s[:, None] & back_r[None, :]


def _check_n(scores: EdgeScores, n: int, who: str) -> None:
    if not 0 <= n <= scores.graph.n_edges:
        raise ValueError(f"{who}: n = {n} is out of range: it must lie in 0..{scores.graph.n_edges} "
                         "(the number of edges)")


def top_n_circuit(scores: EdgeScores, n: int, prune: bool = True) -> Circuit:
    """The ``n`` edges of largest |score|, then pruned."""
    _check_n(scores, n, "top_n_circuit")
    g = scores.graph
    flat = scores.scores.abs().double().masked_fill(~g.mask, float("-inf")).flatten()
    m = torch.zeros_like(g.mask)
    m.view(-1)[flat.topk(n).indices] = True
    return Circuit.of_edges(g, prune_circuit(g, m) if prune else m)


def greedy_circuit(scores: EdgeScores, n: int, prune: bool = True) -> Circuit:
    """Greedy selection from the logits backwards (hannamw/EAP-IG ``Graph.apply_greedy``): start
    with the edges into the logits as candidates; repeatedly add the candidate of largest |score|;
    when that adds a new component (head or MLP), the edges into its receivers (a head's q and its
    key/value group's k and v) become candidates.  Every chosen edge leads to the logits; pruning
    then drops the ones not reached from the embeddings."""
    _check_n(scores, n, "greedy_circuit")
    g = scores.graph
    s = scores.scores.abs().double()
    inputs = _inputs(g)
    heap: list = []
    seen_r: set[int] = set()

    def push(j):
        if j not in seen_r:
            seen_r.add(j)
            for i in g.mask[:, j].nonzero().flatten().tolist():
                heapq.heappush(heap, (-float(s[i, j]), i, j))

    push(g.receiver_index("logits"))
    m = torch.zeros_like(g.mask)
    while n > 0 and heap:
        _, i, j = heapq.heappop(heap)
        m[i, j] = True
        n -= 1
        for jj in inputs[:, i].nonzero().flatten().tolist():
            push(jj)
    return Circuit.of_edges(g, prune_circuit(g, m) if prune else m)


def component_edges(scores: EdgeScores, mask: torch.Tensor | None = None, members=None) -> list[dict]:
    """Edge scores summed per (sender, receiving component), strongest first: ``[{source, target, score}]``.

    A head's q, k and v receivers add into the head (a grouped-query key/value head's into every query
    head it serves); MLP and logits receivers are their own component.  ``mask`` (default every edge)
    picks the edges; ``members`` (display names, ``L3H2`` / ``MLP4``) keeps only edges between them
    and from the token embedding (``embed``) or into the ``logits``."""
    g = scores.graph
    m = g.mask if mask is None else mask
    # receiver -> the component it feeds: the senders it is an input of, or (the logits) a last column
    feeds = torch.cat([_inputs(g), torch.tensor([[r.kind == "logits"] for r in g.receivers])], 1).double()
    total = torch.where(m, scores.scores.double(), 0.0) @ feeds  # [N_s, N_s + 1]
    count = m.double() @ feeds
    names = [n.name for n in g.senders] + ["logits"]
    rows = [i for i, n in enumerate(g.senders) if members is None or n.name in members or n.kind == "embed"]
    cols = [k for k, n in enumerate(names) if members is None or n in members or n == "logits"]
    edges = [{"source": names[i], "target": names[k], "score": float(total[i, k])} for i in rows for k in cols
             if count[i, k]]
    return sorted(edges, key=lambda e: -abs(e["score"]))


def node_layer(name: str, n_layers: int) -> int:
    """Column of a graph node: -1 for the embeddings, ``n_layers`` for the logits, else the component's layer."""
    return -1 if name.endswith("embed") else n_layers if name == "logits" else parse_component(name)[1]
