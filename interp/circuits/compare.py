"""Every attribution method on the same prompts, against activation patching (RelP paper, Table 1).

For each component type (residual stream per layer and position, attention outputs per layer and
position -- the paper's "attn" column --, attention heads, MLP outputs per layer and position) we
compute activation patching (the ground truth), AtP, RelP (two rule sets: ``relp`` = the paper's
``default`` LN + Identity + Half rules, and ``relp-cp-lrp`` = ``default+cp-lrp``, which adds the
AH-rule, CP-LRP on attention) and IG (``ig``: each component hook interpolated corrupt -> clean in
the corrupted run, its per-hook sum = patching of that hook; ``ig-embed``, opt-in: the EAP-IG node
form along the input embeddings), then the Pearson r of each method's scores with patching
(``None``, with the reason in ``pearson_undefined``, where r is undefined: a constant or non-finite score
vector; never nan), and the wall time of each method measured in this run.

The published numbers (Jafari et al. 2025, Table 1, IOI on GPT-2 small; docs/methods.md, RelP) sit
beside ours.  The paper's code demo (TransformerLens ``demos/lrp_patching.ipynb``, after the
Attribution Patching demo) corrupts IOI by swapping the two names at S2; ``corruption="s2"`` does
the same (tasks/ioi.py) and is the like-for-like reproduction.  Our default IOI corruption is
ABC (three fresh names), where every name position differs and the residual cells at S2 patch
non-monotonically in the interpolation (so every gradient-at-corrupt method, AtP and RelP alike,
correlates less there).  The published values are for a different model, so they are context,
not a test oracle.

Cost: patching dominates: L*T (resid) + L*T (attn) + L*H (heads) + L*T (MLPs) patched forward passes
of B*T tokens.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

from interp.tasks import make_task
from interp.results import pearson, pearson_or_reason  # noqa: F401  (re-exported: the one Pearson)

from interp.results import versions

from .pipeline import write_outputs

PAPER = {
    "ioi": {"source": "RelP paper (arXiv 2508.21258) Table 1, IOI, GPT-2 small (attn = attention outputs per layer and position); "
                      "the paper's demo corrupts by the S2 -> IO name swap (our --corruption s2)",
            "atp": {"resid": 0.753, "attn": 0.979, "mlp": 0.195},
            "relp": {"resid": 0.968, "attn": 0.962, "mlp": 0.992}},
}
COMPONENTS = ("resid", "attn", "attn_head", "mlp")
METHOD_SPECS = {
    "patch": ("patch", {}),
    "atp": ("atp", {}),
    "relp": ("relp", {"rules": "default"}),
    "relp-cp-lrp": ("relp", {"rules": "default+cp-lrp"}),
    "ig": ("ig", {"path": "hooks"}),
    "ig-embed": ("ig", {"path": "embeddings"}),
}


def compare_methods(model, task_name: str, n: int = 8, seed: int = 0, methods=None,
                    per_position=("resid", "attn", "mlp"), out: str | Path | None = None, progress: bool = False,
                    corruption: str | None = None, components=COMPONENTS) -> dict:
    """Run ``methods`` on one task; Pearson r vs patching per component type; timings.

    ``corruption``: the task's corruption (``interp.tasks.CORRUPTIONS``; None = the default).
    ``components``: the component types compared (``attn`` is the paper's attention column: each
    layer's attention output per position; ``attn_head`` our per-head one).
    """
    from interp.attribution import activation_patching, attribution_patching, component_types, relevance_patching
    from interp.attribution.ig import integrated_gradients
    from interp.models import model_name

    methods = tuple(m for m in METHOD_SPECS if m != "ig-embed") if methods is None else tuple(methods)
    if "relp-default" in methods:
        raise ValueError("method 'relp-default' was renamed: 'relp' is now RelP with the paper's default rules "
                         "(LN, Identity, Half); 'relp-cp-lrp' adds the AH-rule (CP-LRP), which the old 'relp' used")
    bad = [m for m in methods if m not in METHOD_SPECS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; choose from {sorted(METHOD_SPECS)}")
    if "patch" not in methods:
        methods = ("patch",) + tuple(methods)
    comps = tuple(t.name for t in component_types(components))  # unknown names: a ValueError listing the known
    task = make_task(task_name, model, n=n, seed=seed, corruption=corruption)
    per_position = tuple(c for c in per_position if c in comps)
    results = {}
    for name in methods:
        kind, kw = METHOD_SPECS[name]
        if kind == "patch":
            r = activation_patching(model, task, comps, per_position=per_position, progress=progress)
        elif kind == "atp":
            r = attribution_patching(model, task, comps, per_position=per_position)
        elif kind == "relp":
            r = relevance_patching(model, task, comps, per_position=per_position, **kw)
        else:
            r = integrated_gradients(model, task, comps, per_position=per_position, **kw)
        r.method = name
        results[name] = r
    ref = results["patch"]
    corr, undefined = {}, {}
    for name, r in results.items():
        if name == "patch":
            continue
        corr[name] = {}
        for c in comps:
            corr[name][c], why = pearson_or_reason(r.scores[c], ref.scores[c], name)
            if why is not None:
                undefined.setdefault(name, {})[c] = why
                warnings.warn(f"compare: Pearson r of {name} vs patching on {c!r} is undefined ({why}); "
                              f"reported as None", stacklevel=2)
    secs = {name: r.seconds for name, r in results.items()}
    out_dict = {
        "kind": "compare", "title": f"Attribution methods vs activation patching: {task_name} on {model_name(model)}",
        "model": model_name(model), "task": task_name, "n_prompts": task.n, "seed": seed,
        "corruption": task.meta.get("corruption", corruption),
        "config": {"per_position": list(per_position), "methods": list(methods), "components": list(comps),
                   "relp_rules": {"relp": "default (LN, Identity, Half: the paper's)",
                                  "relp-cp-lrp": "default+cp-lrp (LN, Identity, Half, AH/CP-LRP)"}},
        "metric_clean": ref.metric_clean, "metric_corrupt": ref.metric_corrupt,
        "pearson": corr, "pearson_undefined": undefined, "seconds": secs,
        "speed": {"patch_over_relp": secs["patch"] / secs["relp"] if "relp" in secs else None,
                  "relp_over_atp": secs["relp"] / secs["atp"] if {"relp", "atp"} <= set(secs) else None},
        "scores": {name: r.to_json() for name, r in results.items()},
        "position_labels": [model.tokenizer.decode([t]) for t in task.clean[0].tolist()],
        "ig_completeness": results["ig"].extras if "ig" in results else None,
        "prompts": task.to_json(), "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if task_name in PAPER:
        p = PAPER[task_name]
        out_dict["paper"] = {k: v for k, v in p.items() if k != "source"}
        out_dict["paper_source"] = p["source"]
    if out is not None:
        write_outputs(out_dict, out)
    return out_dict
