"""The steering comparison report: the finding first (a sentence from the numbers), then success-versus-KL curves
per method, the equal-KL table with the seed paper's claims beside it, example generations, then method and
provenance."""

from __future__ import annotations

import html

from interp.reports import Report

from .evaluate import PAPER_CLAIMS, SteeringComparison

KL = SteeringComparison.axes["methods.*.points.kl"]

LABELS = {"mean_diff": "mean difference (CAA)", "grains": "GrAInS", "sae": "SAE latent", "transcoder":
          "transcoder latent", "snmf": "SNMF feature"}
SUCCESS = {"generation": "change in mean VADER sentiment of the continuation",
           "logit": "change in log p(preferred) - log p(dispreferred)"}


def _label(name: str) -> str:
    return LABELS.get(name, name)


def summary_sentence(c) -> str:
    """One sentence from the numbers: which method moves the metric most at the middle KL target."""
    t = c.kl_targets[len(c.kl_targets) // 2]
    pts = c.at(t)
    ranked = sorted(pts.items(), key=lambda kv: kv[1]["delta"], reverse=True)
    best, bp = ranked[0]
    parts = [f"{_label(m)} {p['delta']:+.3f}" + ("" if p["reached"] else f" (KL reached only {p['kl']:.3g})")
             for m, p in ranked]
    lead = (f"{_label(best)} moves the metric most" if bp["delta"] != ranked[-1][1]["delta"]
            else "no method moves the metric more than another")
    return (f"On {c.task} ({c.model}), at next-token KL {t:g} nats from the unsteered model, {lead}: "
            f"{SUCCESS.get(c.task_kind, 'success')} = " + ", ".join(parts) +
            f" (unsteered {c.baseline['success']:+.3f}, continuation perplexity {c.baseline['ppl']:.1f}).")


def _versus_kl(c, y: str):
    """One line per method: ``points.<y>`` against the KL reached (log x axis); hover shows the strength."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for m, rec in c.methods.items():
        pts = rec["points"]
        fig.add_trace(go.Scatter(x=[p["kl"] for p in pts], y=[p[y] for p in pts], mode="lines+markers",
                                 name=_label(m), text=[f"s={p['strength']:.3g}" for p in pts]))
    fig.update_layout(xaxis_title=KL, yaxis_title=SteeringComparison.axes[f"methods.*.points.{y}"], xaxis_type="log")
    return fig


def comparison_report(c) -> Report:
    r = Report(f"Steering comparison: {c.task} on {c.model}", config=c.config, meta=c.meta,
               summary=summary_sentence(c))
    r.add_section("Success versus fluency cost")
    r.add_figure(_versus_kl(c, "delta"), title="Success versus KL, per method",
                 fields=("methods.*.points.kl", "methods.*.points.delta"),
                 caption=f"Each point: the strength calibrated to one KL target; x is the KL reached, y the "
                         f"{SUCCESS.get(c.task_kind, 'success')} relative to the unsteered model.")
    fig = _versus_kl(c, "ppl")
    fig.add_hline(y=c.baseline["ppl"], line_dash="dot", annotation_text="unsteered")
    r.add_figure(fig, title="Continuation perplexity versus KL, per method",
                 fields=("methods.*.points.kl", "methods.*.points.ppl"),
                 caption="Perplexity of the steered greedy continuation under the unsteered model.")
    rows = []
    for t in c.kl_targets:
        for m, p in c.at(t).items():
            cost = c.methods[m]["cost"]
            rows.append({"KL target": t, "method": _label(m), "KL reached": round(p["kl"], 3),
                         "strength": round(p["strength"], 4), "success change": round(p["delta"], 4),
                         "perplexity": round(p["ppl"], 2), "build passes (fwd/bwd)":
                         f"{cost.get('forward_passes')}/{cost.get('backward_passes')}",
                         "build seconds": round(cost.get("seconds") or 0.0, 2),
                         "paper claims (not this benchmark)": PAPER_CLAIMS.get(m, "")})
    r.add_table("Success at equal KL", rows,
                caption="Small-model replication on our own tasks, not the paper's benchmarks: the paper's "
                        "numbers are for 7-8B models on TruthfulQA, MMHal-Bench and SPA-VL.")
    if c.examples:
        r.add_section("Example generations (middle KL target)")
        ex_rows = [{_label(k): v for k, v in e.items()} for e in c.examples]
        t = c.kl_targets[len(c.kl_targets) // 2]
        r.add_table("Before and after", ex_rows,
                    caption=f"Greedy continuations of evaluation prompts, unsteered and with each method's vector at "
                            f"the strength calibrated to next-token KL {t:g} nats.")
    r.add_section("Method and provenance",
                  "Strength per method: doubling then bisection on s >= 0 until the mean next-token "
                  "KL(p_unsteered || p_steered) over the held-out prompts is within 10% of each target. "
                  "See docs/methods.md, Steering (GrAInS, mean-difference, feature steering) for the formulas "
                  "and where GrAInS differs from its reference code.")
    prov = [{"method": _label(m), "hook": rec["hook_name"], "mode": rec["mode"], "chosen": html.escape(
        str(rec.get("chosen", "")))} for m, rec in c.methods.items()]
    r.add_table("Vectors", prov)
    return r
