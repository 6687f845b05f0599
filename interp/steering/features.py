"""Feature steering: one dictionary latent (SAE) or SNMF feature as the steering direction.

1. Cache the hook's activations on text that contains the behaviour (``data/steering/<task>_corpus.txt``, written
   by ``data/steering/make_steering_data.py``) into an activation store (:func:`interp.store.cache_activations`).
2. Fit the dictionary on the store: a ReLU SAE at ``blocks.L.hook_resid_post``
   (:func:`interp.dictionaries.train_sae`), or SNMF on ``blocks.L.mlp.hook_post``
   (:func:`interp.decompositions.snmf.fit_snmf`, Shafran et al. 2025).
3. Choose the latent whose activation differs most between the task's build texts ``prompt + preferred`` and
   ``prompt + dispreferred`` (last position, mean over the build examples): for the SAE the latent activation
   ``relu(w_enc . (h - b_dec) + b_enc)``, for SNMF the projection of the MLP activation on the unit feature
   ``z_i / ||z_i||``.  ``meta['chosen']`` says which latent and why (the two means, its corpus firing rate).
4. Steer: SAE ``add`` (``h + s W_dec[j] / ||W_dec[j]||``) or ``clamp`` (the latent set to ``s``); SNMF ``add``
   of ``z_i / ||z_i||`` at ``mlp.hook_post`` -- the same direction and site as
   :func:`interp.decompositions.snmf_features.calibrate_steering`, with the strength calibrated by the same
   KL rule as every other method here.
Cost: caching ``corpus_tokens`` forward tokens, the dictionary fit, and one forward per build text.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

import torch

from interp.config import takes_config
from interp.decompositions.snmf import SNMFConfig, fit_snmf, store_activations
from interp.models import weight_hash

from .build import layer_hook
from .evaluate import DATA, SteeringTask
from .runs import activations_at, tokenize
from .vector import SteeringVector


@dataclass(frozen=True)
class FeatureSteering:
    """The settings of :func:`feature_vector`."""

    corpus_tokens: int = 20000
    """Corpus tokens cached at the hook to train the SAE / fit the SNMF on."""
    d_sae: int | None = None
    """SAE width (``None``: 4 x the hook's width)."""
    snmf_k: int = 32
    """SNMF features."""
    mode: str = "add"
    """``add`` the unit direction, or ``clamp`` the SAE latent (SAE only)."""
    seed: int = 0
    store_dir: str | None = None
    """Where the corpus store is written (``None``: a temporary folder)."""


@takes_config(FeatureSteering)
def feature_vector(model, method: str, task: SteeringTask, layer: int, *, config: FeatureSteering) -> SteeringVector:
    """An SAE latent (``method='sae'``) or SNMF feature (``'snmf'``) direction for ``task`` (see module doc)."""
    from interp.store import CacheConfig, cache_activations

    mode, seed, snmf_k = config.mode, config.seed, config.snmf_k
    if method not in ("sae", "snmf"):
        raise ValueError(f"feature_vector: method must be 'sae' or 'snmf', got {method!r}")
    if mode not in ("add", "clamp") or (method == "snmf" and mode != "add"):
        raise ValueError(f"feature steering mode must be 'add' (or 'clamp' for an SAE), got {mode!r}")
    t0 = time.perf_counter()
    hook, layer = layer_hook(model, layer, "hook_resid_post" if method == "sae" else "mlp.hook_post")
    corpus = DATA / f"{task.name}_corpus.txt"  # step 1: the behaviour corpus cached at the hook
    if not corpus.exists():
        raise ValueError(f"no behaviour corpus {corpus} for task {task.name!r}; run data/steering/make_steering_data.py")
    store = cache_activations(CacheConfig(
        hooks=[hook], corpus=str(corpus), n_tokens=config.corpus_tokens, context_length=64, batch_size=8,
        dtype="float32", out=config.store_dir or tempfile.mkdtemp(prefix=f"steer_{task.name}_")), model=model)
    pos, neg = (activations_at(model, tokenize(model, [r["prompt"] + r[y] for r in task.build]), hook)
                for y in ("preferred", "dispreferred"))
    X = store_activations(store, hook).X
    if method == "sae":
        from interp.dictionaries import SAEConfig, TrainConfig, train_sae

        d = store.d(hook)
        scfg = SAEConfig(arch="relu", d_in=d, d_sae=config.d_sae or 4 * d, hook_in=hook, l1_coeff=1.0)
        tcfg = TrainConfig(n_tokens=4 * store.n_rows, batch_size=256, lr=1e-3, warmup_steps=10, seed=seed,
                           progress=False, init_rows=min(4096, store.n_rows), dead_after_tokens=10 ** 9)
        sae = train_sae(store, scfg, tcfg).sae.cpu().requires_grad_(False)
        W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
        ap, an = (sae.encode(h).acts.mean(0) for h in (pos, neg))
        j = int((ap - an).argmax())
        bias = float(b_enc[j] - W_enc[:, j] @ b_dec)  # latent j is relu(W_enc[:, j] . h + bias)
        fire = float((X @ W_enc[:, j] + bias > 0).float().mean())  # its density over the corpus
        vec = W_dec[j] / W_dec[j].norm() if mode == "add" else W_dec[j]
        extra = {"encoder": W_enc[:, j], "encoder_bias": bias} if mode == "clamp" else {}
        chosen = (f"SAE latent {j} of {W_enc.shape[1]} (ReLU SAE at {hook}, trained on {store.n_rows} tokens of "
                  f"{corpus.name}): the largest mean activation difference between preferred and dispreferred "
                  f"build texts, {float(ap[j]):.3f} vs {float(an[j]):.3f}; fires on {fire:.1%} of corpus tokens")
        meta = {"latent": j, "d_sae": int(W_enc.shape[1]), "fire_rate": fire}
    else:
        res = fit_snmf(X, SNMFConfig(k=snmf_k, max_iter=300, patience=100, seed=seed))
        Z = torch.nn.functional.normalize(res.Z.float().T, dim=-1)  # [k, d_mlp]
        ap, an = (pos @ Z.T).mean(0), (neg @ Z.T).mean(0)
        j = int((ap - an).argmax())
        chosen = (f"SNMF feature {j} of {snmf_k} (fit on {X.shape[0]} tokens of {corpus.name} at {hook}, "
                  f"relative loss {res.rel_loss:.3f}): the largest mean projection difference between "
                  f"preferred and dispreferred build texts, {float(ap[j]):.3f} vs {float(an[j]):.3f}")
        vec, extra = Z[j], {}
        meta = {"feature": j, "k": snmf_k, "rel_loss": res.rel_loss}
    meta.update(chosen=chosen, mean_pos=float(ap[j]), mean_neg=float(an[j]), corpus=corpus.name,
                corpus_tokens=int(store.n_rows), backward_passes=0, forward_passes=2 * len(task.build),
                forward_tokens_cached=store.n_rows, seconds=time.perf_counter() - t0)
    return SteeringVector(vec, hook, layer, method, weight_hash(model), mode, **extra, meta=meta)
