"""``interp snmf`` and ``interp lib``: decompositions of activations (SNMF features, LIB bases).

Both write their typed result (:mod:`interp.decompositions.results`, kinds ``snmf`` and ``lib``) to
``--out``/results.json and its report to ``--out``/report.html.
"""

from __future__ import annotations

from pathlib import Path

from interp.cli.common import (
    command, config_defaults, default_of, flag_settings, model_of, parse_layers, same, write_result)
from interp.decompositions.lib_transformer import ModelLIBSettings, compare_lib_pca
from interp.decompositions.snmf import SNMFConfig
from interp.decompositions.snmf_features import describe_snmf
from interp.store import ActivationStore


def register(sub) -> None:
    p = command(sub, "snmf", help="semi-NMF of MLP activations (blocks.L.mlp.hook_post) into neuron-group features",
                out="runs/snmf", model="smollm2-135m", seed=None, func=run_snmf)
    p.add_argument("--layer", type=int, required=True, help="MLP layer L (hook blocks.L.mlp.hook_post)")
    p.add_argument("--texts", help="text file, one sequence per line (None: the built-in concept sentences)")
    p.add_argument("--store",
                   help="activation store folder to read the rows from instead of running the model")
    p.add_argument("--n-tokens", type=int, help="token budget: rows used from the store")
    p.add_argument("--n-features", type=int, help="features given contexts, vocabulary and steering")
    p.add_argument("--compare", action="store_true", help="also compare SNMF / DiffMeans (/ SAE) on the concept set")
    config_defaults(p, *CONFIG_FLAGS[:2])  # SNMFConfig checks init

    q = command(sub, "lib", help="local interaction basis over residual layers (or the modular-addition toy)",
                out="runs/lib", model="smollm2-135m", func=run_lib)
    layers = default_of(ModelLIBSettings, "layers")
    q.add_argument("--layers", nargs="+", default=[",".join(map(str, layers))],
                   help="residual layers, e.g. 3,4,5 or 3-5 or 3 4 5 (ignored for --model modadd-p113, the toy)")
    q.add_argument("--keep-bos", action="store_true", help="include the BOS position in the statistics")
    q.add_argument("--no-isolate-ln-var", action="store_true",
                   help="plain residual node layers; by default each is [norm statistic, residual] with the statistic "
                        "that the next LayerNorm/RMSNorm divides by kept as its own basis direction (node 0)")
    config_defaults(q, CONFIG_FLAGS[2])


_SNMF = {"restarts": "n_restarts", **same("k", "sparsity", "init", "max_iter", "patience", "seed", "device")}
_LIB = {"n": "n_texts", **same("seq_len", "probes", "edge_nodes")}
CONFIG_FLAGS = [
    (("snmf",), "interp.decompositions.snmf:SNMFConfig", _SNMF),
    (("snmf",), "interp.decompositions.snmf_features:describe_snmf",
     same("n_tokens", "n_features", "compare")),
    (("lib",), "interp.decompositions.lib_transformer:ModelLIBSettings", _LIB),
]
"""(command path, config, flag dest -> field): checked by tests/test_cli_grammar.py."""


def run_snmf(args) -> int:
    cfg = SNMFConfig(**flag_settings(args, CONFIG_FLAGS[0]))
    model = model_of(args)
    store = texts = None
    if args.store:
        store = ActivationStore.open(args.store)
    elif args.texts:
        texts = [ln.strip() for ln in Path(args.texts).read_text().splitlines() if ln.strip()]
    res = describe_snmf(model, args.layer, cfg, texts=texts, store=store, **flag_settings(args, CONFIG_FLAGS[1]))
    cards = [f"  f{c['index']:<3} n={c['n_neurons']:<3} top: {' '.join(repr(t) for t, _ in c['vocab']['top'][:5])}"
             f"  steer+: {c['steered']['+']!r}" for c in res.features]
    return write_result(args, res, "\n".join(cards))


def run_lib(args) -> int:
    if args.model.startswith("modadd"):
        from interp.toy.modular_addition import ModAddConfig, lib_vs_pca

        p = int(args.model.split("-p")[1]) if "-p" in args.model else 113
        return write_result(args, lib_vs_pca(ModAddConfig(p=p)))

    layers = parse_layers(args.layers)
    model = model_of(args)
    if max(layers) >= model.cfg.n_layers:
        raise ValueError(f"--layers must be < {model.cfg.n_layers} for {args.model}, got {layers}")
    s = ModelLIBSettings(layers=layers, **flag_settings(args, CONFIG_FLAGS[2]), skip_bos=not args.keep_bos,
                         isolate_ln_var=not args.no_isolate_ln_var)
    return write_result(args, compare_lib_pca(model, s))
