"""``interp sae train|eval|dashboard`` and ``interp transcoder train|eval``: dictionaries on an activation store.

Flags map one-to-one onto :class:`interp.dictionaries.SAEConfig` / :class:`TrainConfig` and take
their defaults (see ``CONFIG_FLAGS``).
``train`` writes ``OUT/sae`` (SAELens format), ``OUT/results.json`` (a
:class:`~interp.dictionaries.results.DictionaryTraining`) and ``OUT/report.html``, and keeps
``OUT/checkpoint`` (rerunning the same command resumes from it).  ``eval`` writes the
:class:`~interp.dictionaries.results.DictionaryEvaluation` (kind ``sae`` or ``transcoder``) and its report.
"""

from __future__ import annotations

from pathlib import Path

from interp.cli.common import (
    UserError, command, config_defaults, emit, flag_settings, group, out_path, parse_list, same, write_result)
from interp.dictionaries import SAEConfig, TrainConfig, load_sae, save_sae, train_sae
from interp.dictionaries.dashboards import feature_dashboard
from interp.dictionaries.metrics import evaluate_dictionary
from interp.dictionaries.registry import ARCHS, _load_builtin
from interp.store import ActivationStore


def _train_flags(sub, name: str, help: str, transcoder: bool) -> None:
    _load_builtin()
    kind = "transcoder" if transcoder else "sae"
    p = command(sub, name, help=help, out=f"runs/{kind}-train", seed=None, func=run_train,
                description=help + "; --out receives sae/ (SAELens format), results.json, report.html and checkpoint/ "
                                   "(rerunning the same command resumes from it)")
    p.add_argument("--store", required=True, help="activation store directory (interp cache)")
    if transcoder:
        ends = p.add_mutually_exclusive_group(required=True)
        ends.add_argument("--layer", type=int, help="block L: reads blocks.L.ln2.hook_normalized, "
                          "reconstructs blocks.L.hook_mlp_out")
        ends.add_argument("--hook", help="any stored input hook (with --hook-out instead of --layer)")
        p.add_argument("--hook-out", help="the stored output hook the transcoder reconstructs (with --hook)")
    else:
        p.add_argument("--hook", required=True, help="TransformerLens hook name stored in the store")
    p.add_argument("--arch", default="relu", choices=sorted(ARCHS), help="dictionary architecture")
    p.add_argument("--expansion", type=int, default=8, help="latents = expansion * d_in")
    p.add_argument("--d-sae", type=int, help="number of latents (overrides --expansion)")
    p.add_argument("--n-tokens", type=int,
                   help="token budget: rows to train on (None: all rows of the store)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    config_defaults(p, *(CONFIG_FLAGS[2:4] if transcoder else CONFIG_FLAGS[:2]))  # the SAE's --arch: topk
    p.set_defaults(transcoder=transcoder)


def _eval_flags(sub, name: str, help: str, kind: str) -> None:
    p = command(sub, name, help=help, out=f"runs/{kind}-eval", model=None, func=run_eval,
                description=help + "; --out receives results.json and report.html; --model None: the store's model")
    p.add_argument("--sae", required=True, help="SAE folder (SAELens format: cfg.json + sae_weights.safetensors)")
    p.add_argument("--store", required=True, help="activation store directory")
    p.add_argument("--n-tokens", type=int, help="token budget: rows for L0 / FVU / dead fraction")
    p.add_argument("--n", type=int, help="store sequences for spliced CE / KL (0: skip)")
    config_defaults(p, CONFIG_FLAGS[4])


def register(sub) -> None:
    ssub = group(sub, "sae", "train, evaluate and inspect sparse autoencoders on an activation store")
    _train_flags(ssub, "train", "train an SAE (relu / topk / jumprelu) on one hook of a store", False)
    _eval_flags(ssub, "eval", "L0, FVU, dead fraction, and CE recovered / KL spliced into the model", "sae")
    d = command(ssub, "dashboard", help="HTML feature dashboard: top contexts, histograms, logit effects",
                description="HTML feature dashboard (--out: the HTML file; its typed result goes beside it as .json): "
                            "top contexts, histograms, logit effects; --model None: the store's model",
                out="runs/sae-dashboard.html", model=None, func=run_dashboard)
    d.add_argument("--sae", required=True, help="SAE folder (SAELens format)")
    d.add_argument("--store", required=True, help="activation store directory")
    d.add_argument("--features", help="comma-separated latent indices (None: the 10 most frequent)")
    config_defaults(d, CONFIG_FLAGS[6])

    tsub = group(sub, "transcoder", "train and evaluate transcoders (MLP in -> MLP out)")
    _train_flags(tsub, "train", "train a transcoder: blocks.L.ln2.hook_normalized -> blocks.L.hook_mlp_out",
                 True)
    _eval_flags(tsub, "eval", "as `interp sae eval`, for a transcoder", "transcoder")


_SAE = {"bandwidth": "jumprelu_bandwidth", **same("k", "k_aux", "aux_coeff", "l1_coeff", "l0_coeff")}
_TRAIN = same("batch_size", "lr", "warmup_steps", "decay_frac", "b_dec_init", "dead_after_tokens", "seed",
              "device", "checkpoint_every", "max_steps")
CONFIG_FLAGS = [
    (("sae", "train"), "interp.dictionaries:SAEConfig", {**same("arch"), **_SAE}),
    (("sae", "train"), "interp.dictionaries:TrainConfig", _TRAIN),
    (("transcoder", "train"), "interp.dictionaries:SAEConfig", _SAE),
    (("transcoder", "train"), "interp.dictionaries:TrainConfig", _TRAIN),
    (("sae", "eval"), "interp.dictionaries.metrics:evaluate_dictionary", same("n_tokens", "n")),
    (("transcoder", "eval"), "interp.dictionaries.metrics:evaluate_dictionary", same("n_tokens", "n")),
    (("sae", "dashboard"), "interp.dictionaries.dashboards:DashboardConfig",
     {"n_tokens": "n_rows", "n_examples": "n_examples"}),
]
"""(command path, config, flag dest -> field): checked by tests/test_cli_grammar.py.  Not mirrored on
purpose: ``--n-tokens`` (None: every row of the store, TrainConfig says 1M) and the transcoder's
``--arch`` (relu, the SAE default is topk)."""


def run_train(args) -> int:
    from interp.dictionaries.transcoder import transcoder_hooks
    from interp.parallel import dist_env

    store = ActivationStore.open(args.store)
    hook_in, hook_out = (args.hook, getattr(args, "hook_out", None))
    if args.transcoder and args.layer is not None:
        hook_in, hook_out = transcoder_hooks(args.layer)
    elif args.transcoder and not hook_out:
        raise UserError("transcoder train --hook needs --hook-out (the hook it reconstructs), or use --layer L")
    d_in = store.d(hook_in)
    scfg = SAEConfig(**flag_settings(args, CONFIG_FLAGS[0]), d_in=d_in, d_sae=args.d_sae or args.expansion * d_in,
                     d_out=store.d(hook_out) if hook_out else None, hook_in=hook_in, hook_out=hook_out,
                     model_name=str(store.manifest.get("model", "")),
                     context_length=store.manifest.get("context_length"), extra={"store": str(args.store)})
    out = Path(out_path(args))
    tcfg = TrainConfig(**flag_settings(args, CONFIG_FLAGS[1]), n_tokens=args.n_tokens or store.n_rows,
                       checkpoint_dir=str(out), progress=not args.no_progress)
    res = train_sae(store, scfg, tcfg)
    if dist_env().is_main:  # under `interp dist` every rank holds the same weights; rank 0 writes them
        res.saved_to = str(save_sae(res.sae, out / "sae"))
    return write_result(args, res, f"  saved {res.saved_to} (SAELens format)")


def _sae_store_model(args, with_model: bool = True):
    """The ``--sae`` dictionary, the ``--store`` and (``with_model``) ``--model`` or the store's model."""
    from interp.models import load_model  # looked up at call time, as in model_of

    store = ActivationStore.open(args.store)
    sae = load_sae(args.sae, device=args.device)
    name = args.model or store.manifest.get("model")
    if with_model and not name:
        raise UserError("the store's manifest names no model; pass --model")
    return sae, store, load_model(name, device=args.device) if with_model else None


def run_eval(args) -> int:
    sae, store, model = _sae_store_model(args, with_model=args.n > 0)
    res = evaluate_dictionary(sae, store, model, n_tokens=args.n_tokens, n=args.n, sae_path=args.sae)
    return write_result(args, res)


def run_dashboard(args) -> int:
    feats = list(parse_list(args.features, "--features", cast=int)) if args.features else None
    sae, store, model = _sae_store_model(args)
    res = feature_dashboard(sae, store, out_path(args), features=feats, model=model, n_rows=args.n_tokens,
                            n_examples=args.n_examples)
    json_path = res.save(Path(res.path).with_suffix(".json"))
    return emit(args, res, f"{res.summary()}\n  wrote {res.path}, {json_path}")
