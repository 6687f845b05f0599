"""End to end: task -> attribution scores -> circuit -> verification -> results.json + report.html.

``run_circuit`` is what ``interp circuit ioi|greater-than`` and ``circuits/*.py`` call:
1. build the task on the model (IOI or greater-than, ``n`` prompts);
2. score every residual position, attention head and MLP with the chosen method
   (``patch`` = activation patching, ``atp``, ``relp``, ``ig``);
   scored in the *noising* direction (corrupting one component in the clean run), which is the
   first-order estimate of what step 3 tests;
3. prune to the smallest head+MLP set keeping ``share`` of the metric (faithfulness curve,
   everything outside patched from the corrupted run) and verify it by real patching;
4. for IOI, classify heads by attention-pattern tests;
5. token-level IG attributions (embeddings, corrupted prompt as baseline) for two prompts;
6. write ``results.json`` (scores, circuit, faithfulness, roles, timings) and ``report.html``
   (rendered by :mod:`interp.reports`).

Cost: dominated by step 2 for ``patch`` (one forward per component, batched) and by step 3.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from interp.attribution import activation_patching, attribution_patching, relevance_patching
from interp.attribution.ig import integrated_gradients, layer_integrated_gradients
from interp.tasks import make_task

from .discovery import CircuitConfig, discover_circuit
from .roles import classify_heads

METHODS = ("patch", "atp", "relp", "ig")
COMPONENTS = ("resid", "attn_head", "mlp")


def run_method(model, task, method: str, per_position=("resid",), rules="all", steps: int | None = None,
               progress: bool = False, direction: str = "denoise"):
    """One attribution method over resid / heads / MLPs (a ``ValueError`` for unknown names).

    ``direction='noise'`` scores the effect of corrupting a component in the clean run (patching
    source ``noise``; AtP / RelP gradients at the clean run); IG's straight path is the same
    either way.
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
        return integrated_gradients(model, task, COMPONENTS, per_position=per_position, **kw)
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def versions() -> dict:
    from importlib.metadata import version

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformer_lens": version("transformer-lens"), "transformers": version("transformers"),
            "captum": version("captum"),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "threads": torch.get_num_threads()}


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


def write_outputs(results: dict, out: str | Path) -> tuple[Path, Path | None]:
    """``out/results.json`` and, via interp.reports, ``out/report.html``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rj = out / "results.json"
    rj.write_text(json.dumps(results, indent=1, default=float))
    try:
        from interp.reports import render_results
    except ImportError:  # reports module not available: results.json only
        return rj, None
    html = out / "report.html"
    render_results(rj).write(html)
    return rj, html


def run_circuit(model, task_name: str, method: str = "relp", out: str | Path | None = None, n: int = 8,
                seed: int = 0, share: float = 0.8, rules="all", progress: bool = False) -> dict:
    """The whole pipeline (see module doc); returns the results dict (also written when ``out``)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    t0 = time.perf_counter()
    task = make_task(task_name, model, n=n, seed=seed)
    # The circuit is judged by corrupting everything outside it in the clean run, so components
    # are ranked by their noising effect (what is lost when each one alone is corrupted).
    res = run_method(model, task, method, rules=rules, progress=progress, direction="noise")
    circuit = discover_circuit(model, task, res, CircuitConfig(share=share))
    roles = None
    if task_name == "ioi":
        hr = classify_heads(model, task)
        roles = {}
        for key, role in hr.roles.items():
            l, h = key.split(".")
            if f"blocks.{l}.attn.hook_z[{h}]" in circuit.components:
                roles[f"L{l}H{h}"] = role
    examples = token_examples(model, task)
    from interp.models import model_name

    results = {
        "kind": "circuit", "title": f"{task_name} circuit on {model_name(model)} ({method})",
        "model": model_name(model), "task": task_name, "n_prompts": task.n, "seed": seed,
        "config": {"method": method, "share": share, "rules": rules if method == "relp" else None, "n": n},
        "metric_clean": res.metric_clean, "metric_corrupt": res.metric_corrupt,
        "scores": {method: res.to_json()},
        "position_labels": [model.tokenizer.decode([t]) for t in task.clean[0].tolist()],
        "circuit": circuit.to_json(),
        "faithfulness": {"n_components": circuit.curve_sizes, "recovered": circuit.curve_faithfulness,
                         "target": share, "chosen": len(circuit.components), "total": circuit.n_total},
        "roles": roles or {}, "examples": examples, "prompts": task.to_json(),
        "timings": {method: res.seconds, "circuit_search": circuit.seconds, "total": time.perf_counter() - t0},
        "versions": versions(),
    }
    if out is not None:
        write_outputs(results, out)
    return results
