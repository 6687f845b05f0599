"""``interp steer build|eval|compare``: steering vectors (GrAInS, mean difference, dictionary features).

* ``build TASK --method M --out V``: build one vector from the task's build examples; writes ``V.safetensors`` +
  ``V.json`` (hook, layer, method, model weight hash).
* ``eval TASK --vector V [--vector V2 ...]``: calibrate each vector to the KL targets on the held-out prompts.
* ``compare TASK``: build every ``--methods`` vector and evaluate them at equal KL; writes ``results.json``
  (kind ``steering_comparison``) and ``report.html`` under ``--out``.
See :mod:`interp.steering` and docs/methods.md, Steering (GrAInS, mean-difference, feature steering).
"""

from __future__ import annotations

from pathlib import Path

import torch

from interp.cli.common import command, config_defaults, emit, group, model_of, out_path, parse_list, write_result
from interp.steering import (
    FeatureSteering, GrainsConfig, build_vector, compare_methods, evaluate_steering, load_task, load_vector)
from interp.steering.compare import BUILDERS
from interp.steering.evaluate import DEFAULT_KL_TARGETS

_BUILD = [("interp.steering:GrainsConfig", {"k": "k", "ig_steps": "steps"}),
          ("interp.steering:FeatureSteering", {"n_tokens": "corpus_tokens"})]
CONFIG_FLAGS = [(("steer", "build"), *e) for e in _BUILD] + [(("steer", "compare"), *e) for e in _BUILD] + [
    (("steer", "compare"), "interp.steering.compare:SteeringCompareConfig", {"n_new": "n_new"}),
    (("steer", "eval"), "interp.steering.evaluate:evaluate_steering", {"n_new": "n_new"})]


def _command(sub, name: str, help: str, func, build: bool = True, evaluate: bool = True):
    """``steer NAME TASK``: the shared flags, ``--n-build`` / ``--n-eval``, then the builders' flags (``build``)
    and the evaluation's (``evaluate``)."""
    p = command(sub, name, help, out=f"runs/steer-{name}-<task>", model="smollm2-135m", seed=0, func=func)
    p.add_argument("task", help="sentiment | ioi, or a task JSON file (data/steering/*.json format)")
    p.add_argument("--n-build", type=int, help="build examples used (None: all in the file)")
    p.add_argument("--n-eval", type=int, help="held-out eval prompts used (None: all)")
    if evaluate:
        p.add_argument("--kl", default=",".join(map(str, DEFAULT_KL_TARGETS)),
                       help="next-token KL targets (nats), comma separated")
        p.add_argument("--n-new", type=int, help="greedy tokens generated per prompt and point")
    if build:
        p.add_argument("--layer", type=int, help="block whose output is steered (None: n_layers // 2)")
        p.add_argument("--k", type=int, help="GrAInS: tokens masked per example and sign")
        p.add_argument("--ig-steps", type=int, help="GrAInS: integrated-gradients steps")
        p.add_argument("--n-tokens", type=int, help="sae/snmf: tokens of the behaviour corpus")
    config_defaults(p, *(e for e in CONFIG_FLAGS if e[0] == ("steer", name)))  # the defaults of the API
    return p


def register(subparsers) -> None:
    sub = group(subparsers, "steer", "steering vectors: build, evaluate, compare at equal KL")
    b = _command(sub, "build", "build one steering vector (writes OUT.safetensors + OUT.json)", _build,
                 evaluate=False)
    b.add_argument("--method", required=True, choices=BUILDERS, help="how the direction is built")
    e = _command(sub, "eval", "evaluate saved vectors at equal KL", _eval, build=False)
    e.add_argument("--vector", action="append", required=True, help="a vector written by `steer build`")
    c = _command(sub, "compare", "build and compare all methods on one task", _compare)
    c.add_argument("--methods", default=",".join(BUILDERS), help="comma separated; default: every method")


def _task(args):
    return load_task(args.task, args.n_build, args.n_eval)


def _builders(args):
    """The seeded model, the steered layer and the builders' settings of a ``build`` / ``compare`` run."""
    torch.manual_seed(args.seed)
    model = model_of(args)
    layer = model.cfg.n_layers // 2 if args.layer is None else args.layer
    features = FeatureSteering(corpus_tokens=args.n_tokens, seed=args.seed)
    return model, layer, GrainsConfig(k=args.k, steps=args.ig_steps), features


def _write(args, res) -> int:
    """The comparison's results.json and report.html, then its summary and one row per (method, KL target)."""
    lines = [f"{'method':12s} {'KL target':>9s} {'KL':>7s} {'strength':>10s} {'success':>9s} {'ppl':>8s}"]
    lines += [f"{m:12s} {p['target']:9.3g} {p['kl']:7.3f} {p['strength']:10.4g} {p['delta']:+9.4f} "
              f"{p['ppl']:8.2f}" for m, rec in res.methods.items() for p in rec["points"]]
    return write_result(args, res, "\n".join(lines))


def _build(args) -> int:
    model, layer, grains, features = _builders(args)
    vec = build_vector(model, args.method, _task(args), layer, grains, features)
    path = vec.save(out_path(args))
    info = {"vector": str(path), "method": vec.method, "hook_name": vec.hook_name, "mode": vec.mode,
            "model_hash": vec.model_hash, "norm": float(vec.vector.norm()),
            "cost": {k: vec.meta.get(k) for k in ("forward_passes", "backward_passes", "seconds")}}
    return emit(args, info, f"{vec.method} vector at {vec.hook_name} (|v| = {info['norm']:.3g}, "
                            f"mode {vec.mode}) -> {path}")


def _eval(args) -> int:
    model = model_of(args)
    vecs = {}
    for v in args.vector:
        vec = load_vector(v, model)
        vecs[vec.method if vec.method not in vecs else Path(v).stem] = vec
    kl = parse_list(args.kl, "--kl", cast=float)
    return _write(args, evaluate_steering(model, vecs, _task(args), kl, n_new=args.n_new, seed=args.seed))


def _compare(args) -> int:
    model, layer, grains, features = _builders(args)
    methods = list(parse_list(args.methods, "--methods", BUILDERS))
    kl = parse_list(args.kl, "--kl", cast=float)
    return _write(args, compare_methods(model, _task(args), layer, methods=methods, kl_targets=kl,
                                        n_new=args.n_new, seed=args.seed, grains=grains, features=features))
