"""``interp snmf`` and ``interp lib``: decompositions of activations (SNMF features, LIB bases).

Both write ``results.json`` (with ``"kind"``) and ``report.html`` into ``--out``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def register(sub) -> None:
    from interp.cli.common import command, default_of, renamed
    from interp.decompositions.lib_transformer import ModelLIBSettings
    from interp.decompositions.snmf import SNMFConfig

    d = lambda f: default_of(SNMFConfig, f)  # noqa: E731
    p = command(sub, "snmf", help="semi-NMF of MLP activations (blocks.L.mlp.hook_post) into neuron-group features",
                out="runs/snmf", model="smollm2-135m", seed=d("seed"))
    p.add_argument("--layer", type=int, required=True, help="MLP layer L (hook blocks.L.mlp.hook_post)")
    p.add_argument("--k", type=int, default=d("k"), help="number of features")
    p.add_argument("--texts", default=None, help="text file, one sequence per line (None: the built-in concept sentences)")
    p.add_argument("--store", default=None, help="activation store folder to read the rows from instead of running the model")
    p.add_argument("--n-tokens", type=int, default=20000, help="token budget: rows used from the store")
    p.add_argument("--sparsity", type=float, default=d("sparsity"), help="fraction of neurons kept per feature (WTA)")
    p.add_argument("--init", default=d("init"), choices=["random", "svd", "kmeans"], help="initialisation of the factors")
    p.add_argument("--max-iter", type=int, default=d("max_iter"), help="most multiplicative-update iterations")
    p.add_argument("--patience", type=int, default=d("patience"),
                   help="stop after this many iterations without a relative loss improvement")
    p.add_argument("--restarts", type=int, default=d("n_restarts"), help="independent fits batched together; the best is kept")
    p.add_argument("--n-features", type=int, default=8, help="features given contexts, vocabulary and steering")
    p.add_argument("--compare", action="store_true", help="also compare SNMF / DiffMeans (/ SAE) on the concept set")
    renamed(p, "--max-rows", "--n-tokens")
    renamed(p, "--features", "--n-features")
    p.set_defaults(func=run_snmf)

    s = lambda f: default_of(ModelLIBSettings, f)  # noqa: E731
    q = command(sub, "lib", help="local interaction basis over residual layers (or the modular-addition toy)",
                out="runs/lib", model="smollm2-135m")
    q.add_argument("--layers", nargs="+", default=[",".join(map(str, s("layers")))],
                   help="residual layers, e.g. 3,4,5 or 3-5 or 3 4 5 (ignored for --model modadd-p113, the toy)")
    q.add_argument("--n", type=int, default=s("n_texts"), help="number of sequences")
    q.add_argument("--seq-len", type=int, default=s("seq_len"), help="tokens per sequence")
    q.add_argument("--probes", type=int, default=s("probes"), help="Gaussian output probes per sequence for M'")
    q.add_argument("--edge-nodes", type=int, default=s("edge_nodes"), help="edges between the top nodes of each layer")
    q.add_argument("--keep-bos", action="store_true", help="include the BOS position in the statistics")
    q.add_argument("--no-isolate-ln-var", action="store_true",
                   help="plain residual node layers; by default each is [norm statistic, residual] with the statistic "
                        "that the next LayerNorm/RMSNorm divides by kept as its own basis direction (node 0)")
    renamed(q, "--n-texts", "--n")
    q.set_defaults(func=run_lib)


CONFIG_FLAGS = [
    (("snmf",), "interp.decompositions.snmf:SNMFConfig", {
        "k": "k", "sparsity": "sparsity", "init": "init", "max_iter": "max_iter", "patience": "patience",
        "restarts": "n_restarts", "seed": "seed", "device": "device"}),
    (("lib",), "interp.decompositions.lib_transformer:ModelLIBSettings", {
        "n": "n_texts", "seq_len": "seq_len", "probes": "probes", "edge_nodes": "edge_nodes"}),
]
"""(command path, config, flag dest -> field): checked by tests/test_cli_grammar.py."""


def parse_layers(spec) -> tuple[int, ...]:
    """``3,4,5`` / ``3-5`` / ``3 4 5`` -> layer indices (:func:`interp.cli.common.parse_layers`)."""
    from interp.cli.common import parse_layers as parse

    return parse(spec)


def _write(out: Path, payload: dict, report) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(payload, indent=2, default=str))
    written = [str(out / "results.json")]
    if report is not None:
        report.write(out / "report.html")
        written.append(str(out / "report.html"))
    return written


def _log(msg: str) -> None:
    import sys

    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _report(title, config, meta):
    try:
        from interp.reports import Report
    except ImportError:
        return None
    return Report(title, config=config, meta=meta)


# ---------------------------------------------------------------------------------------

def run_snmf(args) -> int:
    from interp.cli.common import out_path
    from interp.cli.main import emit
    from interp.decompositions.concepts import CONCEPTS, NEUTRAL
    from interp.decompositions.snmf import SNMFConfig, collect_activations, fit_snmf, mlp_hook, store_activations
    from interp.decompositions.snmf_features import feature_cards
    from interp.models import load_model, model_name

    cfg = SNMFConfig(k=args.k, sparsity=args.sparsity, init=args.init, max_iter=args.max_iter,
                     patience=args.patience, n_restarts=args.restarts, device=args.device, seed=args.seed)
    model = load_model(args.model, device=args.device)
    if not 0 <= args.layer < model.cfg.n_layers:
        raise ValueError(f"--layer must be in [0, {model.cfg.n_layers - 1}] for {args.model}, got {args.layer}")
    hook = mlp_hook(args.layer)
    t0 = time.perf_counter()
    if args.store:
        from interp.store import ActivationStore

        acts = store_activations(ActivationStore.open(args.store), hook, args.n_tokens)
        source = {"store": args.store, "rows": int(acts.X.shape[0])}
    else:
        if args.texts:
            texts = [ln.strip() for ln in Path(args.texts).read_text().splitlines() if ln.strip()]
            if not texts:
                raise ValueError(f"{args.texts} holds no text lines")
        else:
            texts = [s for v in CONCEPTS.values() for s in v["sentences"]] + NEUTRAL
        acts = collect_activations(model, texts, hook)
        source = {"texts": args.texts or "built-in concept sentences", "n_texts": len(texts), "rows": int(acts.X.shape[0])}
    t_collect = time.perf_counter() - t0
    _log(f"collected {acts.X.shape[0]} rows of {hook} in {t_collect:.1f}s; fitting SNMF k={args.k}")
    res = fit_snmf(acts.X, cfg)
    _log(f"SNMF: rel loss {res.rel_loss:.4f}, {res.n_iter} iterations in {res.seconds:.1f}s; describing features")
    order = res.Y.mean(1).argsort(descending=True)[: args.n_features].tolist()
    cards, cal = feature_cards(model, args.layer, res, acts, order)
    _log(f"features described ({cal.forward_passes} batched steering passes)")
    payload = {"kind": "snmf", "model": model_name(model), "hook": hook, "source": source,
               "fit": res.to_json(), "collect_seconds": t_collect,
               "features": [c.__dict__ for c in cards],
               "steering": {"prompt": cal.prompt, "targets": cal.targets, "forward_passes": cal.forward_passes}}
    if args.compare:
        from interp.decompositions.snmf_compare import compare_on_concepts

        payload["comparison"] = compare_on_concepts(model, args.layer, k=args.k, snmf_cfg=cfg)
    rep = _report(f"SNMF features of {hook}", {"k": args.k, "sparsity": args.sparsity, "init": args.init},
                  {"model": model_name(model), "fit_seconds": res.seconds})
    if rep is not None:
        rep.add_text(f"Fit on {source['rows']} tokens: relative loss {res.rel_loss:.4f}, "
                     f"{res.n_iter} iterations (best {res.best_iter}), {res.seconds:.1f}s.")
        rep.add_line("reconstruction loss", list(range(len(res.losses))), {"loss": res.losses}, "iteration", "||A - ZY||^2")
        rep.add_table("features", [{
            "feature": c.index, "neurons": c.n_neurons, "mean coef": round(c.mean_coef, 4),
            "top contexts": " | ".join(f"{x['context']}[{x['token']}]" for x in c.contexts[:4]),
            "vocab top": " ".join(t for t, _ in c.vocab["top"][:8]),
            "steer +": c.steered["+"], "steer -": c.steered["-"]} for c in cards])
        if "comparison" in payload:
            rep.add_table("concept comparison", payload["comparison"]["rows"])
    written = _write(Path(out_path(args)), payload, rep)
    lines = [f"SNMF {hook} k={args.k}: rel loss {res.rel_loss:.4f} after {res.n_iter} it ({res.seconds:.1f}s)"]
    for c in cards:
        lines.append(f"  f{c.index:<3} n={c.n_neurons:<3} top: {' '.join(repr(t) for t, _ in c.vocab['top'][:5])}"
                     f"  steer+: {c.steered['+']!r}")
    if "comparison" in payload:
        for r in payload["comparison"]["rows"]:
            lines.append("  " + "  ".join(f"{k}={v}" for k, v in r.items()))
    lines.append("wrote " + ", ".join(written))
    emit(args, payload, "\n".join(lines))
    return 0


def run_lib(args) -> int:
    from interp.cli.common import out_path
    from interp.cli.main import emit

    out = Path(out_path(args))
    if args.model.startswith("modadd"):
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
        from bench_lib import evaluate, graph_figure

        from interp.toy.modular_addition import ModAddConfig

        p = int(args.model.split("-p")[1]) if "-p" in args.model else 113
        res = evaluate(ModAddConfig(p=p))
        fits = res.pop("_results")
        rep = _report(f"LIB vs PCA, modular addition p={p}", {"p": p}, {"timing": res["timing"]})
        if rep is not None:
            rep.add_table("nodes / edges for >= 99% accuracy", [
                {"layer": r["layer"], "LIB nodes": r["lib_nodes"]["needed"], "PCA nodes": r["pca_nodes"]["needed"],
                 "LIB edges": r["lib_edges"]["needed"], "PCA edges": r["pca_edges"]["needed"]} for r in res["rows"]])
            rep.add_figure(graph_figure(fits["lib"]).fig)
        written = _write(out, res, rep)
        human = "\n".join(f"{r['layer']}: nodes LIB {r['lib_nodes']['needed']} PCA {r['pca_nodes']['needed']}; "
                          f"edges LIB {r['lib_edges']['needed']} PCA {r['pca_edges']['needed']}" for r in res["rows"])
        emit(args, res, human + "\nwrote " + ", ".join(written))
        return 0

    from interp.decompositions.lib_transformer import ModelLIBSettings, lib_on_model
    from interp.models import load_model, model_name

    layers = parse_layers(args.layers)
    model = load_model(args.model, device=args.device)
    if max(layers) >= model.cfg.n_layers:
        raise ValueError(f"--layers must be < {model.cfg.n_layers} for {args.model}, got {layers}")
    s = ModelLIBSettings(layers=layers, n_texts=args.n, seq_len=args.seq_len, probes=args.probes,
                         edge_nodes=args.edge_nodes, skip_bos=not args.keep_bos,
                         isolate_ln_var=not args.no_isolate_ln_var)
    results, summaries = {}, {}
    for basis in ("lib", "pca"):
        results[basis], summaries[basis] = lib_on_model(model, s, basis=basis)
    payload = {"kind": "lib", "model": model_name(model), "layers": list(layers), "settings": s.__dict__,
               "summary": summaries, "lib": results["lib"].to_json(top=16), "pca": results["pca"].to_json(top=16),
               "notes": ("M' from Gaussian output probes (unbiased, not exact); edges only between the top "
                         f"{s.edge_nodes} nodes per layer at the last position; activations centred; "
                         + ("the BOS position is included." if args.keep_bos else
                            "the BOS position is left out of the statistics (held fixed in the Jacobians).")
                         + (" Node layers are [norm statistic, residual]; node 0 of each layer is the statistic the next "
                            "LayerNorm/RMSNorm divides by, isolated (LIB paper, LayerNorm appendix; rib's isolate_ln_var)."
                            if s.isolate_ln_var else " Node layers are the plain residual (LN variance not isolated)."))}
    rep = _report(f"LIB on {model_name(model)} residual layers {list(layers)}", s.__dict__, {"model": model_name(model)})
    if rep is not None:
        rep.add_text(payload["notes"])
        rep.add_table("LIB vs PCA", [{"basis": b, **{k: str(v) for k, v in summaries[b].items() if k != "settings"}}
                                     for b in ("lib", "pca")])
        for b in ("lib", "pca"):
            nodes, edges = results[b].graph(top=12)
            for nd in nodes:
                nd["label"] = f"L{nd['layer']}:{nd['index']:03d}"
            rep.add_graph(f"{b.upper()} interaction graph (top 12 nodes per layer)", nodes, edges)
    written = _write(out, payload, rep)
    human = [f"LIB on {model_name(model)} layers {list(layers)}:"]
    for b in ("lib", "pca"):
        sm = summaries[b]
        human.append(f"  {b}: kept {sm['kept']}  dirs for 90% importance {sm['dirs_for_90pct_importance']}  "
                     f"edges for 90% strength {sm['edges_for_90pct_strength']}  ({sm['seconds']:.1f}s)")
    human.append("wrote " + ", ".join(written))
    emit(args, payload, "\n".join(human))
    return 0
