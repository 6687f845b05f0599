"""End to end: task -> attribution scores -> circuit -> verification -> results.json + report.html.

``run_circuit`` is what ``interp circuit ioi|greater-than`` and ``circuits/*.py`` call:
1. build the task on the model (IOI or greater-than, ``n`` prompts);
2. score every residual position, attention head and MLP with the chosen method
   (``patch`` = activation patching, ``atp``, ``relp``, ``ig``);
   scored in the *noising* direction (corrupting one component in the clean run), which is the
   first-order estimate of what step 3 tests;
3. find the circuit, judged by patching everything outside it (``source``: from the corrupted
   run, or mean-ablation):
   ``search='greedy'`` (default): greedy pruning by real patching with the method's scores as
   the order of tries (discovery.py), then the circuit's F on held-out prompts (another seed);
   the top-k curve of step 3b (about 24 sizes, grid + bisection) is kept beside it for comparison.
   ``search='topk'``: the smallest top-k set of the ranking with F >= ``share`` (discovery.py:
   F measured at every size k, since F(k) is not monotone);
4. for IOI, classify heads by attention-pattern tests;
5. token-level IG attributions (embeddings, corrupted prompt as baseline) for two prompts;
6. activation patching of every head and MLP beside the method's scores, EAP edges between
   circuit members, the first prompt's attention patterns;
7. return a :class:`~interp.circuits.result.CircuitResult` (``result.write(folder)`` writes its
   ``results.json`` and ``report.html``; the report leads with the finding).

Settings come as a :class:`CircuitRunConfig` or as its fields in keywords, never both.

Cost: dominated by the per-component patching (step 2 for ``patch``, step 6 otherwise: one forward
per component, batched) and by step 3 (a few hundred patched B*T-token runs for the greedy search
on 300 components, plus ~24 for the comparison top-k curve, or n + 1 when ``search='topk'``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from interp.config import takes_config
from interp import attribution as A
from interp.attribution.ig import layer_integrated_gradients
from interp.models.hooks import component_label
from interp.reports.attention import attention_patterns
from interp.results import check_fields
from interp.tasks import make_task

from .discovery import CircuitConfig, CircuitSettings, SearchConfig, discover_circuit, search_circuit
from .faithfulness import circuit_faithfulness
from .result import CircuitResult, circuit_edges, prompt_tokens, task_fields
from .roles import classify_heads

SCORERS = {"patch": ("activation_patching", ("source", "progress")),
           "atp": ("attribution_patching", ("direction",)),
           "relp": ("relevance_patching", ("rules", "direction")),
           "ig": ("integrated_gradients", ("steps", "path", "direction"))}
"""Each method's function in :mod:`interp.attribution` (looked up at call time) and the settings it takes
(patching's direction is its ``source``)."""
METHODS = tuple(SCORERS)
SEARCHES = ("greedy", "topk")


def run_method(model, task, method: str, components=("resid", "attn_head", "mlp"), per_position=("resid",),
               rules="default", direction: str = "denoise", **settings):
    """One attribution method (:data:`METHODS`) over ``components`` (a ``ValueError`` for unknown names).

    ``rules``: RelP's LRP rule set (``default``: the paper's LN, Identity, Half rules;
    ``default+cp-lrp`` adds the AH-rule; see relp.py) or a tuple of rule names.

    ``direction='noise'`` scores the effect of corrupting a component in the clean run (patching
    source ``noise``; AtP / RelP gradients at the clean run; IG's path from the clean to the
    corrupted activation inside the clean run), ``'denoise'`` the effect of restoring it in the
    corrupted run; every method's scores then carry the sign of patching in that direction (each method's
    settings refuse any other direction).  ``settings``: ``steps`` and ``path`` (IG), ``progress`` (patching,
    default False); each method takes the settings :data:`SCORERS` names for it.
    """
    if method not in SCORERS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    fn, takes = SCORERS[method]
    settings = {"progress": False, **settings, "rules": rules, "direction": direction, "source": direction}
    return getattr(A, fn)(model, task, components, per_position=per_position,
                          **{k: v for k, v in settings.items() if k in takes})


def token_examples(model, task) -> list[dict]:
    """Per-token IG attributions (input embeddings, baseline = the corrupted prompt), first two prompts."""
    out = []
    for i in range(min(2, task.n)):
        sub = task.subset([i])
        r = layer_integrated_gradients(model, sub.clean, sub.metric, baseline=sub.corrupt, steps=16)
        out.append({"title": f"IG (embeddings, corrupt baseline): {task.prompts[i]}",
                    "tokens": prompt_tokens(model, sub), "scores": r.token_scores()[0].tolist(),
                    "completeness_relative_delta": r.relative_delta})
    return out


@dataclass(frozen=True)
class CircuitRunConfig:
    """Settings of :func:`run_circuit` (also its keywords, one to one)."""

    method: str = "relp"
    """Attribution method that scores the components and orders the search (:data:`METHODS`)."""
    n: int = 8
    """Discovery prompts."""
    seed: int = 0
    """Seed of the discovery prompts."""
    share: float = 0.8
    """Faithfulness the circuit must keep (0 < share <= 1)."""
    rules: str = "default"
    """RelP's LRP rule set (``default``, the paper's; see :func:`run_method`)."""
    search: str = "greedy"
    """``greedy`` (pruning by real patching) or ``topk`` (ranking only)."""
    source: str = "corrupt"
    """What components outside the circuit get: ``corrupt`` activations or the clean ``mean``."""
    margin: float = 0.05
    """The greedy search keeps F >= share + margin on the discovery prompts."""
    heldout_n: int = 16
    """Held-out prompts on which the final circuit's F is re-measured (0 skips it)."""
    heldout_seed: int | None = None
    """Seed of the held-out prompts (None: ``seed + 1``)."""
    corruption: str | None = None
    """The task's corruption (``interp.tasks.CORRUPTIONS``; None: its default)."""
    examples: bool = True
    """Per-token IG attributions on two example prompts."""
    check_patching: bool = True
    """Also run activation patching of every head and MLP (the report shows the scores beside it)."""
    edges: bool = True
    """EAP edge scores between circuit members (the circuit graph)."""

    def __post_init__(self):
        check_fields(self, {"method": METHODS, "search": SEARCHES}, {"n": 1, "heldout_n": 0, "margin": 0})
        CircuitSettings(share=self.share, source=self.source)  # the checks the circuit searches share


@takes_config(CircuitRunConfig)
def run_circuit(model, task_name: str, config: CircuitRunConfig | None = None, *, progress: bool = False
                ) -> CircuitResult:
    """The whole pipeline (see module doc); returns a :class:`CircuitResult` (``write(folder)`` writes it).

    Settings: a :class:`CircuitRunConfig` or its fields as keywords (``method="atp", n=16``), not both.
    """
    method, search, source, share = config.method, config.search, config.source, config.share
    t0 = time.perf_counter()
    task = make_task(task_name, model, n=config.n, seed=config.seed, corruption=config.corruption)
    # The circuit is judged by corrupting everything outside it in the clean run, so components
    # are ranked by their noising effect (what is lost when each one alone is corrupted).
    res = run_method(model, task, method, rules=config.rules, progress=progress, direction="noise")
    # the top-k circuit: every size when it is the answer (search='topk'); beside a greedy search it is only a
    # comparison, measured on ~24 sizes (grid + bisection, discovery.py) at a tenth of the cost
    topk = discover_circuit(model, task, res, CircuitConfig(share=share, source=source,
                                                            grid=24 if search == "greedy" else None))
    timings = {method: res.seconds, "topk_search": topk.seconds}
    found = topk
    if search == "greedy":
        found = search_circuit(model, task, res, SearchConfig(share=share, margin=config.margin,
                                                              source=source), progress=progress)
        timings["greedy_search"] = found.seconds
    circuit_json = found.to_json()
    # the curve the search walked, smallest circuit first: F measured at each size
    sizes, fs = zip(*sorted(zip(found.curve_sizes, found.curve_faithfulness)))
    faith = {"n_components": list(sizes), "faithfulness": list(fs), "target": share,
             "chosen": len(found.components), "total": found.n_total,
             "caption": ("Greedy pruning by real patching: each point is a circuit size the search reached and "
                         f"its measured F (everything outside patched from {source}); it starts from all "
                         f"{found.n_total} components and stops at the chosen circuit (red). The top-k curve "
                         "of the attribution ranking is in the results (`topk`)." if search == "greedy" else
                         f"Top-k of the {method} ranking: each point keeps the k best-ranked components and "
                         f"patches every other one ({source}); F is the share of the clean-minus-empty "
                         "metric recovered.")}
    components = found.components
    if config.heldout_n:
        th = time.perf_counter()
        hs = config.seed + 1 if config.heldout_seed is None else config.heldout_seed
        ho_task = make_task(task_name, model, n=config.heldout_n, seed=hs, corruption=config.corruption)
        circuit_json["heldout"] = {**circuit_faithfulness(model, ho_task, components, source=source), "seed": hs}
        timings["heldout_check"] = time.perf_counter() - th
    roles = {}
    if task_name == "ioi":
        members = {component_label(c) for c in components}
        roles = {h: role for h, role in classify_heads(model, task).roles.items() if h in members}
    patching = None
    if config.check_patching:
        patching = res if method == "patch" else A.activation_patching(
            model, task, ("attn_head", "mlp"), progress=progress, source="noise")
        timings["patching_check"] = 0.0 if patching is res else patching.seconds  # patch: the scores reused
    edge_list, edges_note = [], "edges were not requested (edges=False)."
    if config.edges:
        te = time.perf_counter()
        edge_list, edges_note = circuit_edges(model, task, components)
        timings["edges"] = time.perf_counter() - te
    token_ex = token_examples(model, task) if config.examples else []
    timings["total"] = time.perf_counter() - t0
    return CircuitResult(
        **task_fields(model, task_name, task, res), method=method, search=search, seed=config.seed,
        circuit=circuit_json, curve=faith,
        topk={"n_components": len(topk.components), "faithfulness": topk.faithfulness,
              "curve_sizes": topk.curve_sizes, "curve_faithfulness": topk.curve_faithfulness},
        scores=res, patching=patching, edges=edge_list, edges_note=edges_note, roles=roles,
        attention=attention_patterns(model, task.prompts[0]), examples=token_ex,
        config={**asdict(config), "rules": res.config["rules"] if method == "relp" else None},
        timings=timings)
