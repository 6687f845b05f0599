"""LIB on a range of residual-stream layers of a TransformerBridge (e.g. smollm2-135m).

The node layers are ``blocks.{L}.hook_resid_post`` for the chosen layers ``L_0 < L_1 < ...``
(TransformerLens hook names, the one address of an activation).  The map between
consecutive node layers is a hook-patched forward pass: the input tensor replaces
``blocks.{L_l}.hook_resid_post`` and the pass stops (by an exception raised from a hook)
once ``blocks.{L_{l+1}}.hook_resid_post`` has been computed.  Blocks after ``L_l`` only see
the residual stream, so the token ids fed to the pass are placeholders (zeros); the blocks
before ``L_l`` still run (wasted work, bounded by ``L_l`` blocks).  Hooks are scoped and
removed in ``finally``.

Because the residual stream is ``d_model`` wide at every position, the exact ``M'`` needs
``T x d_model`` VJPs per sequence; :func:`lib_on_model` therefore defaults to Gaussian output
probes for ``M'`` and to edges between the top nodes at the last position only, and says so
in its result.  The BOS position carries massive activations (one direction holds ~98%
of the variance when it is included), so by default it is left out of the statistics
(``LIBConfig.skip_first = 1``) while still feeding the maps.  Memory: the replicated batch is ``probes x batch_size`` sequences of
``T`` tokens through ``L_{l+1} + 1`` blocks, with activations kept for the backward pass.

LayerNorm variance (``ModelLIBSettings.isolate_ln_var``, default on; the LIB paper's appendix on
LayerNorm, reference ``ApolloResearch/rib``'s ``LayerNormIn`` / ``LayerNormOut`` split and
``isolate_ln_var``).  Each ``resid_post`` node layer feeds a norm (the next block's ``ln1``, and
its ``ln2`` too in parallel-attention models such as Pythia; ``ln_final`` after the last block),
so its node activation becomes ``[s, resid]`` (``d_model + 1`` coordinates), with ``s`` the
statistic that norm divides by: the variance over ``d_model`` (LayerNorm) or the mean square
(RMSNorm).  The map (:func:`resid_ln_map`) feeds ``s`` to that norm through its ``hook_scale``
(``sqrt(s + eps)``) instead of letting it recompute it from the residual, so the Jacobian
separates the scalar normalisation from the linear part, and :func:`fit_lib` keeps coordinate
0 as its own basis direction (node 0 of every layer).  Fed its own statistic the map equals the
plain forward pass.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from interp.models import model_name, resolve_hooks, scoped_hooks
from interp.models.modules import norm_params
from interp.results import encode, versions

from .lib import LIBConfig, LIBResult, fit_lib
from .results import LIBComparison, spectra


class _Stop(Exception):
    pass


def resid_map(model, layer_in: int, layer_out: int):
    """``resid_post[layer_in] [B, T, d] -> resid_post[layer_out] [B, T, d]`` through the model's blocks."""
    if not 0 <= layer_in < layer_out < model.cfg.n_layers:
        raise ValueError(f"need 0 <= layer_in < layer_out < {model.cfg.n_layers}, got {layer_in}, {layer_out}")
    h_in, h_out = f"blocks.{layer_in}.hook_resid_post", f"blocks.{layer_out}.hook_resid_post"
    resolve_hooks(model, [h_in, h_out])
    dev = next(model.parameters()).device

    def g(x: torch.Tensor, extra: list | None = None) -> torch.Tensor:
        box = {}

        def grab(a, hook=None):
            box["y"] = a
            raise _Stop

        put = [(h_in, lambda a, hook=None: x.to(a.dtype))]
        with scoped_hooks(model, fwd=[*put, *(extra or []), (h_out, grab)]), contextlib.suppress(_Stop):
            model(torch.zeros(x.shape[:2], dtype=torch.long, device=dev))  # placeholder tokens
        return box["y"]

    return g


def _norms_after(model, layer: int) -> list[tuple[str, object]]:
    """(hook_scale name, norm module) of the norms that normalise ``blocks.{layer}.hook_resid_post`` itself."""
    if layer + 1 == model.cfg.n_layers:
        return [("ln_final.hook_scale", model.ln_final)]
    lns = ("ln1", "ln2") if getattr(model.cfg, "parallel_attn_mlp", False) else ("ln1",)
    return [(f"blocks.{layer + 1}.{ln}.hook_scale", getattr(model.blocks[layer + 1], ln)) for ln in lns]


def ln_statistic(model, layer: int, resid: torch.Tensor) -> torch.Tensor:
    """``[..., 1]`` what the norm after ``resid_post[layer]`` divides by (before ``+ eps``, ``sqrt``):
    the variance over ``d_model`` (LayerNorm) or the mean square (RMSNorm)."""
    norm = _norms_after(model, layer)[0][1]
    x = resid if getattr(norm, "uses_rms_norm", False) else resid - resid.mean(-1, keepdim=True)
    return x.pow(2).mean(-1, keepdim=True)


def resid_ln_map(model, layer_in: int, layer_out: int):
    """``[s, resid_post[layer_in]] [B, T, d+1] -> [s', resid_post[layer_out]] [B, T, d+1]``.

    ``s`` replaces the statistic of the norm(s) right after ``layer_in`` (their ``hook_scale`` is
    set to ``sqrt(max(s, 0) + eps)``); ``s'`` is :func:`ln_statistic` of the output.
    """
    g = resid_map(model, layer_in, layer_out)
    norms = _norms_after(model, layer_in)
    resolve_hooks(model, [n for n, _ in norms])
    eps = [norm_params(m, model)[2] for _, m in norms]  # (gain, bias, eps, rms) of each norm

    def h(x: torch.Tensor) -> torch.Tensor:
        s = x[..., :1]
        scales = [(n, lambda a, hook=None, e=e: (s.clamp_min(0) + e).sqrt().to(a.dtype))
                  for (n, _), e in zip(norms, eps)]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="A forward hook edited hook_scale")
            y = g(x[..., 1:], extra=scales)
        return torch.cat([ln_statistic(model, layer_out, y).to(y.dtype), y], -1)

    return h


@dataclass
class ModelLIBSettings:
    """How :func:`lib_on_model` samples text and approximates the Jacobian sums."""

    layers: tuple[int, ...] = (3, 4, 5)
    """Residual layers (``blocks.L.hook_resid_post``), increasing."""
    n_texts: int = 16
    """Sequences used."""
    seq_len: int = 24
    """Tokens per sequence (texts are truncated; shorter texts are dropped)."""
    probes: int = 16
    """Gaussian output probes per sequence for M' (None would be exact and very slow)."""
    edge_nodes: int = 16
    """Edges only between the first this many nodes of each layer, at the last output position."""
    batch_size: int = 4
    """Sequences per VJP pass."""
    skip_bos: bool = True
    """Leave the BOS position (attention sink, massive activations) out of the statistics."""
    isolate_ln_var: bool = True
    """Node layers ``[s, resid]`` with the next norm's statistic ``s`` as an isolated basis direction
    (module docstring); off: plain ``resid`` layers, the norm's scaling mixed into the other directions."""

    def __post_init__(self):
        if len(self.layers) < 2 or list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"layers must be >= 2 increasing layer indices, got {self.layers}")


def default_texts(n: int) -> list[str]:
    """Offline prose: the concept sentences (interp.decompositions.concepts), cycled."""
    from .concepts import SENTENCES as pool

    # join neighbours so that sequences are long enough
    joined = [" ".join(pool[i:i + 3]) for i in range(0, len(pool), 3)]
    return [joined[i % len(joined)] for i in range(n)]


def lib_on_model(model, settings: ModelLIBSettings, texts: Sequence[str] | None = None,
                 basis: str = "lib") -> tuple[LIBResult, dict]:
    """Fit LIB (or PCA) on ``blocks.{L}.hook_resid_post`` for ``settings.layers`` (in float64).

    Returns the result and a summary dict (layers, token shape, :func:`~.results.spectra`, total seconds).
    """
    s = settings
    texts = default_texts(s.n_texts) if texts is None else texts
    rows = [r[:s.seq_len] for r in (model.to_tokens(t)[0] for t in texts) if len(r) >= s.seq_len][:s.n_texts]
    if len(rows) < 2:
        raise ValueError(f"need at least 2 texts with >= {s.seq_len} tokens, got {len(rows)}")
    tokens = torch.stack(rows).to(next(model.parameters()).device)
    names = [f"blocks.{L}.hook_resid_post" for L in s.layers]
    t0 = time.perf_counter()
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=names)
    acts = [cache[n].detach().double() for n in names]
    if s.isolate_ln_var:
        acts = [torch.cat([ln_statistic(model, L, a), a], -1) for L, a in zip(s.layers, acts)]
    make_map = resid_ln_map if s.isolate_ln_var else resid_map
    maps = [make_map(model, a, b) for a, b in zip(s.layers[:-1], s.layers[1:])]  # fit_lib casts their outputs
    cfg = LIBConfig(basis=basis, probes=s.probes, max_edge_nodes=s.edge_nodes, edge_positions="last",
                    batch_size=s.batch_size, skip_first=1 if s.skip_bos else 0)
    res = fit_lib(acts[0], maps, names, cfg, acts=acts, isolated=[int(s.isolate_ln_var)] * len(names))
    return res, {"layers": list(s.layers), "tokens": list(tokens.shape), **spectra(res),
                 "seconds": time.perf_counter() - t0}


def compare_lib_pca(model, settings: ModelLIBSettings):
    """LIB and PCA fitted by :func:`lib_on_model` on the same (default) texts: a
    :class:`~interp.decompositions.results.LIBComparison` (graphs of the top 16 nodes per layer)."""
    fits = {b: lib_on_model(model, settings, basis=b) for b in ("lib", "pca")}
    s = settings
    notes = ("M' from Gaussian output probes (unbiased, not exact); " if s.probes else "M' exact; ") + (
        f"edges only between the top {s.edge_nodes} nodes per layer at the last position; "
        "activations centred; " + ("the BOS position is left out of the statistics (held fixed in the Jacobians)."
                                   if s.skip_bos else "the BOS position is included.")
        + (" Node layers are [norm statistic, residual]; node 0 of each layer is the statistic the next "
           "LayerNorm/RMSNorm divides by, isolated (LIB paper, LayerNorm appendix; rib's isolate_ln_var)."
           if s.isolate_ln_var else " Node layers are the plain residual (LN variance not isolated)."))
    return LIBComparison(model=model_name(model), names=fits["lib"][0].names,
                         lib=encode(fits["lib"][0].to_json(top=16)), pca=encode(fits["pca"][0].to_json(top=16)),
                         spectra=encode({b: sm for b, (_, sm) in fits.items()}),
                         settings=encode(asdict(s)), notes=notes, meta={"versions": versions()})
