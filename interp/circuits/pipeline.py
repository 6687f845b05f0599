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
   the order of tries (search.py), then the circuit's F on held-out prompts (another seed);
   the top-k curve of step 3b (about 24 sizes, grid + bisection) is kept beside it for comparison.
   ``search='topk'``: the smallest top-k set of the ranking with F >= ``share`` (discovery.py:
   F measured at every size k, since F(k) is not monotone);
4. for IOI, classify heads by attention-pattern tests;
5. token-level IG attributions (embeddings, corrupted prompt as baseline) for two prompts;
6. activation patching of every head and MLP beside the method's scores, EAP edges between
   circuit members, the first prompt's attention patterns;
7. return a :class:`~interp.circuits.result.CircuitResult`; with ``out``, write its
   ``results.json`` and ``report.html`` (the report leads with the finding).

Cost: dominated by the per-component patching (step 2 for ``patch``, step 6 otherwise: one forward
per component, batched) and by step 3 (a few hundred patched B*T-token runs for the greedy search
on 300 components, plus ~24 for the comparison top-k curve, or n + 1 when ``search='topk'``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from interp.attribution import activation_patching, attribution_patching, relevance_patching
from interp.attribution.ig import integrated_gradients, layer_integrated_gradients
from interp.tasks import make_task

from interp.results import Result, versions

from .discovery import CircuitConfig, discover_circuit
from .result import CircuitResult, circuit_edges
from .roles import classify_heads
from .search import SearchConfig, circuit_faithfulness, search_circuit

METHODS = ("patch", "atp", "relp", "ig")
SEARCHES = ("greedy", "topk")
COMPONENTS = ("resid", "attn_head", "mlp")


def run_method(model, task, method: str, per_position=("resid",), rules="default", steps: int | None = None,
               progress: bool = False, direction: str = "denoise"):
    """One attribution method over resid / heads / MLPs (a ``ValueError`` for unknown names).

    ``rules``: RelP's LRP rule set (``default``: the paper's LN, Identity, Half rules;
    ``default+cp-lrp`` adds the AH-rule; see relp.py) or a tuple of rule names.

    ``direction='noise'`` scores the effect of corrupting a component in the clean run (patching
    source ``noise``; AtP / RelP gradients at the clean run; IG's path from the clean to the
    corrupted activation inside the clean run), ``'denoise'`` the effect of restoring it in the
    corrupted run; every method's scores then carry the sign of patching in that direction.
    """
    if direction not in ("denoise", "noise"):
        raise ValueError(f"direction must be 'denoise' or 'noise', got {direction!r}")
    if method == "patch":
        return activation_patching(model, task, COMPONENTS, per_position=per_position, progress=progress,
                                   source=direction)
    if method == "atp":
        return attribution_patching(model, task, COMPONENTS, per_position=per_position, direction=direction)
    if method == "relp":
        from interp.attribution import RelPConfig

        return relevance_patching(model, task, COMPONENTS, per_position=per_position,
                                  config=RelPConfig(rules=rules, direction=direction))
    if method == "ig":
        kw = {} if steps is None else {"steps": steps}
        return integrated_gradients(model, task, COMPONENTS, per_position=per_position, direction=direction, **kw)
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def token_examples(model, task, n_examples: int = 2, steps: int = 16) -> list[dict]:
    """Per-token IG attributions (input embeddings, baseline = the corrupted prompt)."""
    out = []
    for i in range(min(n_examples, task.n)):
        sub = task.subset([i])
        r = layer_integrated_gradients(model, sub.clean, sub.metric, baseline=sub.corrupt, steps=steps)
        toks = [model.tokenizer.decode([t]) for t in sub.clean[0].tolist()]
        out.append({"title": f"IG (embeddings, corrupt baseline): {task.prompts[i]}", "tokens": toks,
                    "scores": r.token_scores()[0].tolist(), "completeness_relative_delta": r.relative_delta})
    return out


def write_outputs(results, out: str | Path) -> tuple[Path, Path | None]:
    """``out/results.json`` and, via interp.reports, ``out/report.html`` (a typed result or a dict)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rj = out / "results.json"
    if isinstance(results, Result):
        results.save(rj)
        html = out / "report.html"
        results.report().write(html)
        return rj, html
    rj.write_text(json.dumps(results, indent=1, default=float))
    try:
        from interp.reports import render_results
    except ImportError:  # reports module not available: results.json only
        return rj, None
    html = out / "report.html"
    render_results(rj).write(html)
    return rj, html


def run_circuit(model, task_name: str, method: str = "relp", out: str | Path | None = None, n: int = 8,
                seed: int = 0, share: float = 0.8, rules="default", progress: bool = False, search: str = "greedy",
                source: str = "corrupt", margin: float = 0.05, heldout_n: int = 16,
                heldout_seed: int | None = None, examples: bool = True, corruption: str | None = None,
                check_patching: bool = True, edges: bool = True) -> CircuitResult:
    """The whole pipeline (see module doc); returns a :class:`CircuitResult` (also written when ``out``).

    ``search``: ``greedy`` (pruning by real patching) or ``topk`` (ranking only).  ``source``:
    what components outside the circuit get (``corrupt`` or ``mean``).  ``margin``: the greedy
    search keeps F >= share + margin on the discovery prompts.  ``heldout_n`` prompts with seed
    ``heldout_seed`` (default ``seed + 1``) re-measure the final circuit's F (0 skips it).
    ``corruption``: the task's corruption (``interp.tasks.CORRUPTIONS``; None = its default).
    ``rules``: RelP's rule set (``default``, the paper's; see :func:`run_method`).
    ``check_patching``: also run activation patching of every head and MLP (the report shows the
    method's scores beside it).  ``edges``: EAP edge scores between circuit members (the graph).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    if search not in SEARCHES:
        raise ValueError(f"unknown search {search!r}; choose from {SEARCHES}")
    t0 = time.perf_counter()
    task = make_task(task_name, model, n=n, seed=seed, corruption=corruption)
    # The circuit is judged by corrupting everything outside it in the clean run, so components
    # are ranked by their noising effect (what is lost when each one alone is corrupted).
    res = run_method(model, task, method, rules=rules, progress=progress, direction="noise")
    timings = {method: res.seconds}
    # the top-k circuit: every size when it is the answer (search='topk'); beside a greedy search it is only a
    # comparison, measured on ~24 sizes (grid + bisection, discovery.py) at a tenth of the cost
    topk = discover_circuit(model, task, res, CircuitConfig(share=share, source=source,
                                                            grid=24 if search == "greedy" else None))
    timings["topk_search"] = topk.seconds
    heldout = None
    if search == "greedy":
        found = search_circuit(model, task, res, SearchConfig(share=share, margin=margin, source=source),
                               progress=progress)
        timings["greedy_search"] = found.seconds
        circuit_json = found.to_json()
        circuit_json["components"] = [{"name": c, "score": _score_of(res, c)} for c in found.components]
        # pruning trajectory, smallest circuit first: F measured at each accepted size
        curve = sorted(zip(found.trajectory_sizes, found.trajectory_F))
        faith = {"n_components": [k for k, _ in curve], "faithfulness": [f for _, f in curve], "target": share,
                 "chosen": len(found.components), "total": found.n_total,
                 "caption": ("Greedy pruning by real patching: each point is a circuit size the search reached and "
                             f"its measured F (everything outside patched from {source}); it starts from all "
                             f"{found.n_total} components and stops at the chosen circuit (red). The top-k curve "
                             "of the attribution ranking is in the results (`topk`).")}
        components = found.components
    else:
        circuit_json = topk.to_json()
        faith = {"n_components": topk.curve_sizes, "faithfulness": topk.curve_faithfulness, "target": share,
                 "chosen": len(topk.components), "total": topk.n_total,
                 "caption": (f"Top-k of the {method} ranking: each point keeps the k best-ranked components and "
                             f"patches every other one ({source}); F is the share of the clean-minus-empty "
                             "metric recovered.")}
        components = topk.components
    if heldout_n:
        th = time.perf_counter()
        hs = seed + 1 if heldout_seed is None else heldout_seed
        ho_task = make_task(task_name, model, n=heldout_n, seed=hs, corruption=corruption)
        heldout = circuit_faithfulness(model, ho_task, components, source=source)
        heldout["seed"] = hs
        timings["heldout_check"] = time.perf_counter() - th
        circuit_json["heldout"] = heldout
    roles = {}
    if task_name == "ioi":
        hr = classify_heads(model, task)
        for key, role in hr.roles.items():
            l, h = key.split(".")
            if f"blocks.{l}.attn.hook_z[{h}]" in components:
                roles[f"L{l}H{h}"] = role
    patching = None
    if check_patching:
        tp = time.perf_counter()
        patching = res if method == "patch" else activation_patching(
            model, task, ("attn_head", "mlp"), progress=progress, source="noise")
        timings["patching_check"] = time.perf_counter() - tp
    edge_list, edges_note = [], "edges were not requested (edges=False)."
    if edges:
        te = time.perf_counter()
        edge_list, edges_note = circuit_edges(model, task, components)
        timings["edges"] = time.perf_counter() - te
    token_ex = token_examples(model, task) if examples else []
    from interp.models import model_name
    from interp.reports.attention import attention_patterns

    timings["total"] = time.perf_counter() - t0
    result = CircuitResult(
        task=task_name, model=model_name(model), method=method, search=search,
        corruption=task.meta.get("corruption"), n_prompts=task.n, seed=seed,
        metric_clean=res.metric_clean, metric_corrupt=res.metric_corrupt,
        circuit=circuit_json, curve=faith,
        topk={"n_components": len(topk.components), "faithfulness": topk.faithfulness,
              "curve_sizes": topk.curve_sizes, "curve_faithfulness": topk.curve_faithfulness},
        scores=res, patching=patching, edges=edge_list, edges_note=edges_note, roles=roles,
        attention=attention_patterns(model, task.prompts[0]), examples=token_ex,
        position_labels=[model.tokenizer.decode([t]) for t in task.clean[0].tolist()],
        prompts=task.to_json(),
        config={"method": method, "share": share, "rules": res.config["rules"] if method == "relp" else None, "n": n,
                "search": search, "source": source, "margin": margin if search == "greedy" else None,
                "heldout_n": heldout_n, "check_patching": check_patching, "edges": edges},
        timings=timings, versions=versions(),
    )
    if out is not None:
        write_outputs(result, out)
    return result


def _score_of(res, name: str) -> float:
    from interp.models.hooks import parse_component

    t, l, idx = parse_component(name)
    s = res.scores[t]
    if t in res.per_position:
        s = s.sum(-1)
    return float(s[(l, *idx)])
