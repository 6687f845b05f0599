"""HTML reports for the extreme-token analyses (via :class:`interp.reports.Report`).

Each builder takes the typed results of :mod:`interp.phenomena` and returns a ``Report``:
layer x head heatmaps per domain, the ablation table and switching heads
(:func:`sinks_report`); per-layer ratios, detected entries, zero/mean ablation and the
dynamics fit per layer (:func:`massive_report`); the Bigram-Backcopy mechanism over training
(:func:`bb_report`).
"""

from __future__ import annotations

import numpy as np


def _head_labels(n):
    return [f"H{h}" for h in range(n)]


def _layer_labels(n):
    return [f"L{layer}" for layer in range(n)]


def sinks_report(res, meta: dict, config: dict, decode=None):
    """Report of a :class:`interp.phenomena.dormant.DormantResult`."""
    from interp.reports import Report

    r = Report(f"Attention sinks and active-dormant heads: {meta.get('model', '')}", config=config, meta=meta)
    first = next(iter(res.stats.values()))
    L, H = first.sink_score.shape
    lines = [f"Domains: {', '.join(res.domains)}; {first.n_seqs} sequences x {first.seq_len} tokens each; "
             f"{len(res.heads)} heads ablated ({res.config.ablation}); thresholds: sink >= {res.config.sink_threshold}, "
             f"|Δloss| <= {res.config.loss_threshold} nats/token."]
    c = res.config
    lines.append(f"Each Δloss is the mean over sequences of the paired per-sequence difference (ablated − clean); "
                 f"[lo, hi] is its {c.ci_level:.0%} paired-bootstrap interval over sequences ({c.n_boot} resamples). "
                 f"A head is called dormant on a domain only when its sink score reaches {c.sink_threshold} and the "
                 f"whole interval lies inside ±{c.loss_threshold}, active only when the interval lies outside ±"
                 f"{c.loss_threshold}, and undetermined otherwise (more sequences, --n, narrow the intervals).")
    widths = [hi - lo for d in res.domains for lo, hi in res.delta_ci[d]]
    if widths:
        lines.append(f"Interval widths: median {float(np.median(widths)):.4f}, max {max(widths):.4f} nats/token.")
    if res.switching:
        lines.append("Switching heads (dormant on one domain, active and causally confirmed on another): " + ", ".join(
            f"{s['head']} (dormant on {'/'.join(s['dormant_on'])}, active on {'/'.join(s['active_on'])}; Δloss CI "
            + "; ".join(f"{d} [{s['delta_ci'][d][0]:.4f}, {s['delta_ci'][d][1]:.4f}]" for d in res.domains) + ")"
            for s in res.switching))
    else:
        lines.append("No head meets the switching criteria with these thresholds and intervals; see the ablation "
                     "table for the scores.")
    r.add_text("\n\n".join(lines))
    for d in res.domains:
        st = res.stats[d]
        r.add_section(f"Domain: {d}", f"clean loss {res.clean_loss[d]:.4f} nats/token")
        r.add_heatmap(f"{d}: sink score (mean attention of queries q>=1 to the first token)", st.sink_score.tolist(),
                      _head_labels(H), _layer_labels(L), x_title="head", y_title="layer")
        r.add_heatmap(f"{d}: value drain ‖v(⟨s⟩)‖ / mean ‖v(i>=1)‖", st.value_drain.tolist(),
                      _head_labels(H), _layer_labels(L), x_title="head", y_title="layer")
        r.add_line(f"{d}: residual norm at the first token vs the others (blocks.ℓ.hook_resid_post)", list(range(L)),
                   {"‖h(⟨s⟩)‖": st.resid_norm_sink.tolist(), "max_{i>=1} ‖h(i)‖": st.resid_norm_rest_max.tolist(),
                    "mean_{i>=1} ‖h(i)‖": st.resid_norm_rest_mean.tolist()}, x_title="layer", y_title="norm", log_y=True)
        if st.example_sink_attention is not None and res.heads and decode:
            Lh, hh = (res.switching[0]["layer"], res.switching[0]["head_index"]) if res.switching else res.heads[0]
            toks = [decode(t) for t in st.example_tokens]
            r.add_token_attributions(f"{d}: attention of each token to the first token, head L{Lh}H{hh}", toks,
                                     st.example_sink_attention[Lh, hh].tolist())
    r.add_section("Causal confirmation")
    if res.heads:
        dl = np.array([res.delta_loss[d] for d in res.domains])
        r.add_heatmap("Δloss when the head is ablated (rows: domains, columns: heads)", dl.tolist(),
                      [f"L{a}H{b}" for a, b in res.heads], res.domains, x_title="head", y_title="domain")
    r.add_table("Ablated heads: sink score, Δloss and label per domain", res.table())
    if res.switching:
        r.add_table("Switching heads", [{"head": s["head"], "dormant_on": ", ".join(s["dormant_on"]),
                                          "active_on": ", ".join(s["active_on"]),
                                          **{f"sink[{d}]": round(v, 4) for d, v in s["sink_score"].items()},
                                          **{f"dloss[{d}]": round(v, 5) for d, v in s["delta_loss"].items()},
                                          **{f"ci[{d}]": f"[{v[0]:.4f}, {v[1]:.4f}]" for d, v in s["delta_ci"].items()}}
                                         for s in res.switching])
    return r


def massive_report(stats, ablation, dynamics, meta: dict, config: dict):
    """Report of massive activations (:class:`MassiveStats`, :class:`MassiveAblation` or None,
    :class:`CheckpointDynamics` or None)."""
    from interp.reports import Report

    r = Report(f"Massive activations: {meta.get('model', '')}", config=config, meta=meta)
    k = stats.kinds()
    r.add_text(f"{stats.n_entries} activations with |a| > {stats.config.abs_threshold} and >= "
               f"{stats.config.ratio_threshold}x the layer median; on the first token: {k['first']}, on delimiters: "
               f"{k['delimiter']}, elsewhere: {k['other']} (of the {len(stats.entries)} listed).")
    layers = list(range(len(stats.hooks)))
    r.add_line("Top-1 / median |h| per layer (blocks.ℓ.hook_resid_post)", layers, {"ratio": stats.ratio.tolist()},
               x_title="layer", y_title="top-1 / median", log_y=True)
    r.add_line("Top-1 and median |h| per layer", layers, {"top-1": stats.top1.tolist(), "median": stats.median.tolist()},
               x_title="layer", y_title="|h|", log_y=True)
    if stats.entries:
        r.add_table("Massive activations by layer, dimension and token kind", stats.summary())
    if ablation is not None:
        r.add_table(f"Overwriting the massive activations at {ablation.hook} (dims {ablation.dims})",
                    [{"variant": v, "loss": round(ablation.loss[v], 4), "KL(clean||variant)": round(ablation.kl[v], 4)}
                     for v in ablation.loss],
                    caption=f"{ablation.n_overwritten} entries overwritten per variant ({ablation.n_by_kind}); "
                            "mean sets each to the held-out mean of its token kind, per dimension: "
                            + "; ".join(f"{k} {[None if x is None else round(x, 1) for x in v]}"
                                        for k, v in ablation.mean_values.items() if any(x is not None for x in v))
                            + "; random_zero zeroes as many random non-massive entries of the same layer (control).")
    if dynamics is not None:
        r.add_section("Dynamics over training checkpoints")
        ratio = np.array(dynamics.ratio)
        ys = {f"L{j}": ratio[:, j].tolist() for j in range(ratio.shape[1])}
        for j, f in enumerate(dynamics.fits):
            if f is not None:
                ys[f"L{j} fit"] = f.predict(dynamics.steps).tolist()
        r.add_line("Top-1 / median ratio over training, with the five-parameter fit", dynamics.steps, ys,
                   x_title="step", y_title="ratio")
        r.add_table("Fit f(t) = A exp(-λx) log x + K, x = γt + t₀ per layer",
                    [{"layer": j, **({k: (round(v, 6) if isinstance(v, float) else v) for k, v in f.to_json().items()}
                                     if f else {"error": e})} for j, (f, e) in enumerate(zip(dynamics.fits, dynamics.errors))])
    return r


def bb_report(mechs: dict, run, meta: dict, config: dict):
    """Report of the Bigram-Backcopy toy: mechanism measurements per checkpoint step."""
    from interp.reports import Report

    r = Report("Bigram-Backcopy toy model", config=config, meta=meta)
    steps = sorted(mechs)
    last = mechs[steps[-1]]
    r.add_text(f"Final checkpoint (step {steps[-1]}): attention to the previous token at triggers "
               f"{last.attn_prev_at_trigger}, attention to ⟨s⟩ elsewhere {last.attn_bos_at_other}; moving the "
               f"head's attention to ⟨s⟩ changes the loss by {last.ablation_delta_trigger} nats at triggers and "
               f"{last.ablation_delta_other} elsewhere; value drain {last.value_drain}; residual peak {last.resid_peak}.")
    if run is not None:
        r.add_line("Training loss", list(range(1, len(run.losses) + 1)), {"loss": run.losses}, x_title="step",
                   y_title="nats/token")
    n_layers = len(last.attn_prev_at_trigger)
    for j in range(n_layers):
        r.add_line(f"Layer {j}: attention over training", steps,
                   {"prev token at triggers": [mechs[s].attn_prev_at_trigger[j] for s in steps],
                    "⟨s⟩ at non-triggers": [mechs[s].attn_bos_at_other[j] for s in steps],
                    "⟨s⟩ at triggers": [mechs[s].attn_bos_at_trigger[j] for s in steps]}, x_title="step",
                   y_title="attention")
        r.add_line(f"Layer {j}: value drain and residual norm at ⟨s⟩", steps,
                   {"value drain": [mechs[s].value_drain[j] for s in steps],
                    "residual peak": [mechs[s].resid_peak[j] for s in steps],
                    "‖h(⟨s⟩)‖": [mechs[s].resid_norm_sink[j] for s in steps]}, x_title="step", y_title="")
    r.add_table("Mechanism per checkpoint", [{"step": s, **{k: v for k, v in vars(mechs[s]).items()}} for s in steps])
    return r
