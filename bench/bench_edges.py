"""Benchmark: EAP and EAP-IG edge scores vs real edge patching on IOI (SmolLM2-135M).

In one run, on the same prompts:
1. EAP (gradient at the clean input) and EAP-IG (m = ``--steps`` left-Riemann steps over the
   input embeddings, Hanna et al. 2024) score every edge of the graph (interp.attribution.edges):
   wall time of each.
2. Real edge patching (interp.attribution.edge_patching: the clean run with one receiver's input
   carrying the sender's corrupted value) on a sample: the ``--top`` edges by |EAP-IG| plus
   ``--random`` edges drawn uniformly from the rest.  Pearson and Spearman r of each estimate with
   the patched effect, on the whole sample and on each part.
3. Speed: edge patching's seconds per edge, extrapolated to every edge, over EAP / EAP-IG's time
   for all of them; EAP's gradient pass over one plain forward+backward of the model (the floor);
   the fast gradient path over the reference path (``--reference``).  Times are the best of
   ``--repeats`` runs after a warm-up.  On a shared 2-core machine use ``--threads 1``: with two
   threads on oversubscribed cores a SmolLM2 forward ran 8x slower here.  The peer implementation (hannamw/EAP-IG) needs TransformerLens's
   HookedTransformer, which TransformerLens 4.3 no longer has, so real patching is the peer here.

    python bench/bench_edges.py [--model smollm2-135m] [--n 8] [--steps 5] [--top 100] [--random 100]

Writes bench/results/bench_edges.json with the machine, load average, versions and command line.

``--faithfulness`` (a separate run; it updates only the ``faithfulness`` key of the JSON): for IOI
and greater-than, the faithfulness curve of top-n edge circuits (interp/circuits/faithfulness.py: every edge
outside the circuit carries the corrupted run; circuits pruned to paths embeddings -> logits) for
EAP, EAP-IG and clean-corrupted (``--activations``: also EAP-IG-activations), F_norm per size, the
node overlap (Jaccard) of the EAP and EAP-IG circuits, and the seconds of scoring and of the
circuit runs (Hanna et al. 2024's claim: EAP-IG circuits are more faithful at equal size).

    python bench/bench_edges.py --faithfulness --threads 1

``--activations-replay`` (a separate run; it updates only the ``activations_replay`` key): the wall
time of EAP-IG-activations (IOI, ``--share``) with the prefix replay (the fast path: the blocks
before each sender group are not recomputed for the m copies) against the reference path
(``fast=False``: every block recomputed, per-head identity nodes, full logits), in the same run, and
max |replay - reference| over the scores.  ``--isolate`` also times the fast path with the replay
alone switched off (the bench patches edges.hook_layer to 0), which separates the replay's gain
from the other fast-path shortcuts.  Records os.getloadavg() before and after each run, torch's
version and thread count.

    python bench/bench_edges.py --activations-replay --threads 1 [--isolate] [--share own]
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-300))


def ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share their mean rank)."""
    x = x.double()
    order = x.argsort()
    r = torch.empty_like(x)
    r[order] = torch.arange(len(x), dtype=torch.float64)
    for v in x.unique():
        m = x == v
        if m.sum() > 1:
            r[m] = r[m].mean()
    return r


def spearman(a, b) -> float:
    return pearson(ranks(a), ranks(b))


def _plain_forward_backward(model, task) -> float:
    """Seconds of one forward + backward (to the embeddings) of the clean batch, last-position logits only
    (as EAP's gradient pass): the floor of a gradient pass."""
    from interp.attribution.fastpath import fast_forward, reads_last_position_only
    from interp.models import scoped_hooks

    box = {}

    def leaf(x, hook):
        box["e"] = x.detach().requires_grad_(True)
        return box["e"]

    with torch.no_grad():
        last = reads_last_position_only(task.metric, model(task.clean))
    t0 = time.perf_counter()
    with torch.enable_grad(), scoped_hooks(model, fwd=[("hook_embed", leaf)]), fast_forward(model, None, 1, 0, last):
        torch.autograd.grad(task.metric(model(task.clean)).sum(), box["e"])
    return time.perf_counter() - t0


SIZES = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 40000)


def faithfulness_bench(args) -> None:
    from interp.circuits import faithfulness_curve, top_n_circuit
    from interp.attribution.edges import edge_attribution
    from interp.circuits.pipeline import make_task
    from interp.results import versions
    from interp.models import load_model

    load0 = open("/proc/loadavg").read().split()[:3]
    model = load_model(args.model, device="cpu" if not torch.cuda.is_available() else None)
    methods = ["eap", "eap-ig", "clean-corrupted"] + (["eap-ig-activations"] if args.activations else [])
    out = {"command": " ".join([sys.executable.split("/")[-1]] + sys.argv), "created": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "model": args.model, "n_prompts": args.n, "steps": args.steps,
        "sizes": list(SIZES), "loadavg_start": load0, "torch_threads": torch.get_num_threads(),
        "versions": versions(), "tasks": {}}
    for tname in args.tasks.split(","):
        task = make_task(tname, model, n=args.n, seed=args.seed)
        scores = []
        for m in methods:
            scores.append(edge_attribution(model, task, m, steps=args.steps, max_tokens=args.max_tokens))
            print(f"{tname} {m}: {scores[-1].seconds:.1f} s", flush=True)
        sizes = [n for n in SIZES if n <= scores[0].graph.n_edges]
        cur = faithfulness_curve(model, task, scores, sizes, max_tokens=args.max_tokens,
                                 selection="both" if args.greedy else "top-n")
        overlap = []
        for n in sizes:
            a, b = (set(top_n_circuit(s, n).components) for s in scores[:2])
            overlap.append(len(a & b) / max(1, len(a | b)))
        n_circ = len(cur.curves) * len(sizes) + 2
        out["tasks"][tname] = {
            "tokens": int(task.clean.shape[1]), "n_edges": scores[0].graph.n_edges,
            "metric_clean": cur.metric_clean, "metric_corrupt": cur.metric_corrupt, "identity": cur.identity,
            "curves": cur.curves, "node_jaccard_eap_vs_eap_ig": overlap,
            "seconds": {**{s.method: s.seconds for s in scores}, "faithfulness_all_circuits": cur.seconds,
                        "per_circuit": cur.seconds / n_circ, "n_circuits_incl_full_and_empty": n_circ},
            "config": cur.config, "command": out["command"], "created": out["created"],
            "loadavg_end": open("/proc/loadavg").read().split()[:3]}
        print(f"{tname}: {n_circ} circuits in {cur.seconds:.1f} s; identity {cur.identity}", flush=True)
        for m, c in cur.curves.items():
            print(f"  {m:18s}", " ".join(f"{n}:{f:.2f}" for n, f in zip(c["n_edges"], c["f_norm"])), flush=True)
    out["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    path = Path(args.out)
    data = json.loads(path.read_text()) if path.exists() else {}
    key = "faithfulness" + ("_activations" if args.activations else "") + ("_greedy" if args.greedy else "")
    old = data.get(key, {}).get("tasks", {})  # a run of other tasks keeps the earlier tasks (each records its command)
    data[key] = {**out, "tasks": {**old, **out["tasks"]}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    print(f"wrote {path}")


def replay_bench(args) -> None:
    """EAP-IG-activations: prefix replay (fast) vs reference (fast=False) in one run (module doc)."""
    from interp.attribution import edges as E
    from interp.results import versions
    from interp.models import load_model
    from interp.tasks import ioi_task

    model = load_model(args.model, device="cpu" if not torch.cuda.is_available() else None)
    task = ioi_task(model, n=args.n, seed=args.seed)
    out = {"command": " ".join([sys.executable.split("/")[-1]] + sys.argv),
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "model": args.model, "task": "ioi",
           "n_prompts": task.n, "tokens": int(task.clean.shape[1]), "steps": args.steps, "share": args.share,
           "max_tokens": args.max_tokens, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "cpus": os.cpu_count(), "platform": platform.platform(), "versions": versions(), "runs": {}}
    path = Path(args.out)

    def save():
        data = json.loads(path.read_text()) if path.exists() else {}
        data["activations_replay"] = out
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1))

    E.edge_attribution(model, task.subset([0]), "eap-ig-activations", steps=1)  # warm-up
    runs = [("replay", True)] + ([("fast_no_replay", True)] if args.isolate else []) + [("reference", False)]
    scores = {}
    for name, fast in runs:
        load0 = os.getloadavg()
        orig = E.hook_layer
        if name == "fast_no_replay":
            E.hook_layer = lambda hook: 0  # receiver_grads replays blocks < hook_layer(at): none
        try:
            r = E.edge_attribution(model, task, "eap-ig-activations", steps=args.steps, max_tokens=args.max_tokens,
                                   fast=fast, share=args.share)
        finally:
            E.hook_layer = orig
        scores[name] = r.scores
        out["runs"][name] = {"seconds": r.seconds, "config": r.config, "loadavg_start": list(load0),
                             "loadavg_end": list(os.getloadavg())}
        if name == "fast_no_replay":
            out["runs"][name]["note"] = "replay switched off by the bench (edges.hook_layer patched to 0)"
        print(f"eap-ig-activations {name}: {r.seconds:.1f} s (load {load0} -> {os.getloadavg()})", flush=True)
        save()
    ref, rep = scores["reference"], scores["replay"]
    out["reference_over_replay"] = out["runs"]["reference"]["seconds"] / out["runs"]["replay"]["seconds"]
    out["max_abs_diff_replay_vs_reference"] = float((rep - ref).abs().max())
    out["max_abs_score_reference"] = float(ref.abs().max())
    if "fast_no_replay" in scores:
        out["no_replay_over_replay"] = out["runs"]["fast_no_replay"]["seconds"] / out["runs"]["replay"]["seconds"]
        out["max_abs_diff_replay_vs_no_replay"] = float((rep - scores["fast_no_replay"]).abs().max())
    save()
    print(f"reference / replay = {out['reference_over_replay']:.2f}x; max |replay - reference| = "
          f"{out['max_abs_diff_replay_vs_reference']:.3g} (max |score| {out['max_abs_score_reference']:.3g})"
          + (f"; no-replay fast / replay = {out['no_replay_over_replay']:.2f}x" if "no_replay_over_replay" in out
             else "") + f"; wrote {path}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task", default="ioi", choices=["ioi", "greater-than"])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--top", type=int, default=100)
    ap.add_argument("--random", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=4096)
    ap.add_argument("--reference", action="store_true", help="also time the reference gradient path (fast=False)")
    ap.add_argument("--repeats", type=int, default=2, help="time each method this many times, keep the best")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_edges.json"))
    ap.add_argument("--faithfulness", action="store_true", help="the faithfulness curves (see the module doc)")
    ap.add_argument("--activations", action="store_true", help="with --faithfulness: also EAP-IG-activations")
    ap.add_argument("--greedy", action="store_true", help="with --faithfulness: also greedy circuits")
    ap.add_argument("--tasks", default="ioi,greater-than", help="with --faithfulness: comma-separated tasks")
    ap.add_argument("--activations-replay", action="store_true",
                    help="EAP-IG-activations prefix replay vs reference (see the module doc)")
    ap.add_argument("--isolate", action="store_true", help="with --activations-replay: also the fast path without replay")
    ap.add_argument("--share", default="own", choices=["own", "all"], help="with --activations-replay")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.faithfulness:
        return faithfulness_bench(args)
    if args.activations_replay:
        return replay_bench(args)

    from interp.attribution.edge_patching import edge_patching
    from interp.attribution.edges import edge_attribution
    from interp.circuits.pipeline import make_task
    from interp.results import versions
    from interp.models import load_model

    load0 = open("/proc/loadavg").read().split()[:3]
    model = load_model(args.model, device="cpu" if not torch.cuda.is_available() else None)
    task = make_task(args.task, model, n=args.n, seed=args.seed)
    print(f"{args.task} on {args.model}: {task.n} prompts x {task.clean.shape[1]} tokens; load {load0}", flush=True)

    def best(fn):
        runs = [fn() for _ in range(max(1, args.repeats))]
        return min(runs, key=lambda r: r.seconds)

    edge_attribution(model, task.subset([0]), "eap")  # warm-up (allocator, lazy imports)
    eap = best(lambda: edge_attribution(model, task, "eap", max_tokens=args.max_tokens))
    print(f"EAP: {eap.seconds:.1f} s for {eap.graph.n_edges} edges {eap.timings}", flush=True)
    ig = best(lambda: edge_attribution(model, task, "eap-ig", steps=args.steps, max_tokens=args.max_tokens))
    print(f"EAP-IG (m={args.steps}): {ig.seconds:.1f} s {ig.timings}", flush=True)
    ref = None
    if args.reference:
        ref = best(lambda: edge_attribution(model, task, "eap", max_tokens=args.max_tokens, fast=False))
        print(f"EAP reference path: {ref.seconds:.1f} s (gradients {ref.timings['gradients']:.1f} s vs fast "
              f"{eap.timings['gradients']:.1f} s); max |fast - ref| = {float((ref.scores - eap.scores).abs().max()):.3g}",
              flush=True)
    plain = min(_plain_forward_backward(model, task) for _ in range(max(1, args.repeats)))
    print(f"plain forward+backward of the clean batch: {plain:.1f} s; EAP gradient pass / plain = "
          f"{eap.timings['gradients'] / plain:.2f}", flush=True)

    # the sample: top edges by |EAP-IG| plus uniform random others
    g = ig.graph
    all_edges = g.mask.nonzero()  # [E, 2]
    vals = ig.scores[all_edges[:, 0], all_edges[:, 1]].abs()
    order = vals.argsort(descending=True)
    top = order[:args.top]
    gen = torch.Generator().manual_seed(args.seed)
    rest = order[args.top:]
    rnd = rest[torch.randperm(len(rest), generator=gen)[:args.random]]
    sample = torch.cat([top, rnd])
    pairs = [tuple(all_edges[i].tolist()) for i in sample]
    patch = edge_patching(model, task, pairs, max_tokens=args.max_tokens, progress=True)
    per_edge = patch.seconds / len(pairs)
    print(f"edge patching: {patch.seconds:.1f} s for {len(pairs)} edges ({per_edge:.2f} s/edge)", flush=True)

    truth = patch.effects
    est = {"eap": torch.tensor([float(eap.scores[i, j]) for i, j in pairs]),
           "eap-ig": torch.tensor([float(ig.scores[i, j]) for i, j in pairs])}
    parts = {"all": slice(None), "top": slice(0, len(top)), "random": slice(len(top), None)}
    corr = {m: {p: {"pearson": pearson(v[s], truth[s]), "spearman": spearman(v[s], truth[s])}
                for p, s in parts.items() if len(truth[s]) > 2}
            for m, v in est.items()}
    for m, c in corr.items():
        print(m, {p: {k: round(x, 3) for k, x in d.items()} for p, d in c.items()})
    all_patch_s = per_edge * g.n_edges
    res = {
        "command": " ".join([sys.executable.split("/")[-1]] + sys.argv),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "loadavg_start": load0, "loadavg_end": open("/proc/loadavg").read().split()[:3]},
        "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": args.model, "task": args.task, "n_prompts": task.n, "tokens": int(task.clean.shape[1]),
        "steps": args.steps, "n_senders": len(g.senders), "n_receivers": len(g.receivers), "n_edges": g.n_edges,
        "metric_clean": eap.metric_clean, "metric_corrupt": eap.metric_corrupt,
        "repeats": args.repeats,
        "seconds": {"eap": eap.seconds, "eap-ig": ig.seconds, "eap_reference": ref.seconds if ref else None,
                    "plain_forward_backward": plain,
                    "edge_patching_sample": patch.seconds, "edge_patching_per_edge": per_edge,
                    "edge_patching_all_edges_extrapolated": all_patch_s},
        "timings": {"eap": eap.timings, "eap-ig": ig.timings},
        "speedup_over_patching_all_edges": {"eap": all_patch_s / eap.seconds, "eap-ig": all_patch_s / ig.seconds},
        "eap_ig_over_eap_time": ig.seconds / eap.seconds,
        "eap_gradient_pass_over_plain_forward_backward": eap.timings["gradients"] / plain,
        "reference_over_fast_gradient_pass": ref.timings["gradients"] / eap.timings["gradients"] if ref else None,
        "fast_vs_reference_max_abs_diff": float((ref.scores - eap.scores).abs().max()) if ref else None,
        "sample": {"top_by_abs_eap_ig": len(top), "random": len(rnd), "seed": args.seed,
                   "patching_config": patch.config},
        "correlation_with_edge_patching": corr,
        "edges": [{"edge": g.edge_name(i, j), "part": "top" if k < len(top) else "random",
                   "eap": float(est["eap"][k]), "eap_ig": float(est["eap-ig"][k]), "patch": float(truth[k])}
                  for k, (i, j) in enumerate(pairs)],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"patching all {g.n_edges} edges would take ~{all_patch_s / 3600:.1f} h: EAP is "
          f"{res['speedup_over_patching_all_edges']['eap']:.0f}x, EAP-IG "
          f"{res['speedup_over_patching_all_edges']['eap-ig']:.0f}x faster; wrote {args.out}")


if __name__ == "__main__":
    main()
