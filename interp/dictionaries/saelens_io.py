"""Save and load dictionaries in SAELens's on-disk format (``cfg.json`` + ``sae_weights.safetensors``).

Layout (SAELens >= 6, ``SAE.save_model``)::

    <dir>/cfg.json                  {"architecture": "topk", "d_in": 576, "d_sae": 4608, "k": 32,
                                     "dtype": "float32", "apply_b_dec_to_input": true,
                                     "normalize_activations": "none", "metadata": {"model_name": ...,
                                     "hook_name": "blocks.8.hook_resid_post", "context_size": 128, ...}}
    <dir>/sae_weights.safetensors   W_enc [d_in, d_sae], W_dec [d_sae, d_out], b_enc [d_sae],
                                    b_dec [d_out], threshold [d_sae] (jumprelu only)

Architecture names: ours ``relu``/``topk``/``jumprelu`` <-> SAELens ``standard``/``topk``/``jumprelu``;
transcoders are ``transcoder`` (ReLU) and ``jumprelu_transcoder`` with ``d_out`` and
``metadata.hook_name_out``.  A TopK transcoder has no SAELens class; it is written as
``topk_transcoder`` (interp reads it, SAELens does not).  interp-only settings (L1/L0
coefficients, bandwidth, k_aux) travel in ``metadata.interp``.

Loading also accepts pre-6.0 SAELens configs (``hook_point``, ``activation_fn_str``,
``activation_fn_kwargs.k``) and folds the SAELens options that have an exact equivalent:
``rescale_acts_by_decoder_norm`` (TopK; folded into W_enc/b_enc/W_dec), and
``apply_b_dec_to_input=false`` for SAEs (folded into b_enc).  Options without an exact
equivalent (``normalize_activations`` other than ``none``, ``hook_z`` reshaping, skip
transcoders, gated SAEs) raise :class:`SAELensFormatError` naming the field.

Memory: one copy of the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from interp.models.hooks import layer_of, mlp_hook
from interp.store.format import read_json_object

from .base import SAEConfig, SparseCoder
from .registry import make

CFG_FILE, WEIGHTS_FILE = "cfg.json", "sae_weights.safetensors"
_TO_SAELENS = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu"}
_TC_TO_SAELENS = {"relu": "transcoder", "jumprelu": "jumprelu_transcoder", "topk": "topk_transcoder"}
_FROM_SAELENS = {v: (k, tc) for tc, m in ((False, _TO_SAELENS), (True, _TC_TO_SAELENS)) for k, v in m.items()}
SAELENS_FORMAT_VERSION = "6.0.0"
"""Written as ``metadata.sae_lens_version``: SAELens treats configs without it as pre-6.0 and drops the metadata."""
_INTERP_KEYS = ("k", "k_aux", "aux_coeff", "l1_coeff", "l0_coeff", "jumprelu_bandwidth", "jumprelu_init_threshold")


class SAELensFormatError(ValueError):
    """A SAELens folder interp cannot read faithfully (names the file and field)."""


def save_sae(sae: SparseCoder, path: str | Path) -> Path:
    """Write ``sae`` to folder ``path`` in SAELens format; returns the folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    c = sae.cfg
    arch = (_TC_TO_SAELENS if c.is_transcoder else _TO_SAELENS)[c.arch]
    meta = {"sae_lens_version": SAELENS_FORMAT_VERSION, "model_name": c.model_name, "hook_name": c.hook_in, "hook_head_index": None,
            "context_size": c.context_length, "sae_lens_training_version": None,
            "interp": {k: getattr(c, k) for k in _INTERP_KEYS} | {"extra": c.extra}}
    cfg = {"architecture": arch, "d_in": c.d_in, "d_sae": c.d_sae, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": not c.is_transcoder, "normalize_activations": "none",
           "reshape_activations": "none", "metadata": meta}
    if c.is_transcoder:
        cfg["d_out"] = c.out_dim
        meta["hook_name_out"] = c.target_hook
    if c.arch == "topk":
        cfg.update(k=c.k, rescale_acts_by_decoder_norm=False)
    names = ("W_enc", "W_dec", "b_enc", "b_dec") + (("threshold",) if c.arch == "jumprelu" else ())
    save_file({n: getattr(sae, n).detach().float().cpu().contiguous() for n in names}, path / WEIGHTS_FILE)
    (path / CFG_FILE).write_text(json.dumps(cfg, indent=2))
    return path


def _read_cfg(path: Path) -> dict:
    f = path / CFG_FILE
    if not f.exists():
        raise FileNotFoundError(f"{path} is not a SAELens SAE folder: {CFG_FILE} is missing")
    cfg = read_json_object(f, SAELensFormatError)
    meta = dict(cfg.get("metadata") or {})
    if "hook_point" in cfg or "activation_fn_str" in cfg or not cfg.get("metadata"):  # pre-6.0 layout
        rename = {"hook_point": "hook_name", "activation_fn_str": "activation_fn"}  # the names load_sae reads
        cfg = {rename.get(k, k): v for k, v in cfg.items()}
        for k in ("model_name", "hook_name", "context_size", "hook_name_out"):
            if k in cfg:
                meta.setdefault(k, cfg[k])
        if cfg.get("activation_fn") == "topk" and (cfg.get("activation_fn_kwargs") or {}).get("k"):
            cfg["architecture"], cfg["k"] = "topk", cfg["activation_fn_kwargs"]["k"]
        cfg.setdefault("architecture", "standard")
        cfg.setdefault("apply_b_dec_to_input", True)
        if cfg.get("activation_fn") not in (None, "relu", "topk"):
            raise SAELensFormatError(f"{f}: activation_fn {cfg['activation_fn']!r} is not supported")
    cfg["metadata"] = meta
    return cfg


def load_sae(path: str | Path, device=None) -> SparseCoder:
    """Load a SAELens-format folder (written by SAELens or by :func:`save_sae`) as an interp dictionary."""
    path = Path(path)
    cfg = _read_cfg(path)
    arch = cfg.get("architecture")
    if arch not in _FROM_SAELENS:
        raise SAELensFormatError(f"{path / CFG_FILE}: architecture {arch!r} is not supported; "
                                 f"interp reads {sorted(_FROM_SAELENS)}")
    for key in ("normalize_activations", "reshape_activations"):
        if cfg.get(key) not in ("none", None, False):  # False: a pre-6.0 normalize_activations
            raise SAELensFormatError(f"{path / CFG_FILE}: {key}={cfg[key]!r} has no exact interp equivalent "
                                     "(only 'none' is supported)")
    head = cfg["metadata"].get("hook_head_index", cfg.get("hook_point_head_index"))
    if head is not None:  # an SAE of one head's slice of hook_z would load as one of the whole hook
        raise SAELensFormatError(f"{path / CFG_FILE}: this SAE reads one attention head (head index {head}); "
                                 "interp reads SAEs of a whole hook only")
    for key in ("d_in", "d_sae"):
        if not isinstance(cfg.get(key), int):
            raise SAELensFormatError(f"{path / CFG_FILE}: {key} missing or not an integer")
    wfile = path / WEIGHTS_FILE
    try:  # a missing file: FileNotFoundError naming it
        w = {k: v.float() for k, v in load_file(wfile).items()}
    except SafetensorError as e:  # e.g. a pickle (torch.save) under this name: refused, never unpickled
        raise SAELensFormatError(f"{wfile} is not a valid safetensors file ({e}); interp reads weights only "
                                 "as safetensors, never pickles (.pt/.bin)") from e
    ours, transcoder = _FROM_SAELENS[arch]
    meta = cfg["metadata"]
    interp_meta = meta.get("interp") or {}
    d_in, d_sae = cfg["d_in"], cfg["d_sae"]
    d_out = cfg.get("d_out") if transcoder else None
    out_dim = d_out or d_in
    expect = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, out_dim), "b_enc": (d_sae,), "b_dec": (out_dim,)}
    for n, shape in (expect | ({"threshold": (d_sae,)} if ours == "jumprelu" else {})).items():
        if n not in w:
            raise SAELensFormatError(f"{wfile}: tensor {n} is missing (has {sorted(w)})")
        if tuple(w[n].shape) != shape:
            raise SAELensFormatError(f"{wfile}: {n} has shape {tuple(w[n].shape)}, cfg.json implies {shape}")
    hook_in = meta.get("hook_name") or ""
    sae_cfg = SAEConfig(
        arch=ours, d_in=d_in, d_sae=d_sae, d_out=d_out, hook_in=hook_in,
        hook_out=(meta.get("hook_name_out") or _default_out(hook_in)) if transcoder else None,
        model_name=meta.get("model_name") or "",
        context_length=meta.get("context_size"), extra=interp_meta.get("extra", {}),
        **({k: v for k, v in interp_meta.items() if k in _INTERP_KEYS and v is not None}
           | ({"k": int(cfg["k"])} if ours == "topk" and "k" in cfg else {})),
    )
    if not transcoder and not cfg.get("apply_b_dec_to_input", True):
        w["b_enc"] = w["b_enc"] + w["b_dec"] @ w["W_enc"]  # ours computes (x - b_dec) @ W_enc + b_enc
    if transcoder and cfg.get("apply_b_dec_to_input"):
        raise SAELensFormatError(f"{path / CFG_FILE}: apply_b_dec_to_input=true is invalid for a transcoder")
    if ours == "topk" and cfg.get("rescale_acts_by_decoder_norm"):
        # SAELens: pre' = pre * ||W_dec_i||, decode with W_dec_i / ||W_dec_i||: fold exactly.
        n = w["W_dec"].norm(dim=-1).clamp_min(1e-8)
        w["W_enc"], w["b_enc"], w["W_dec"] = w["W_enc"] * n, w["b_enc"] * n, w["W_dec"] / n[:, None]
    if ours == "jumprelu":
        # SAELens: ReLU(z) * 1{z > threshold}; ours z * 1{z > theta}, theta > 0: equal for theta = max(t, 0).
        w["log_threshold"] = w["threshold"].clamp_min(torch.finfo(torch.float32).tiny).log()
    sae = make(sae_cfg)
    sae.load_state_dict({k: w[k] for k in sae.state_dict()})
    return sae.to(device or "cpu").eval()


def _default_out(hook_in: str) -> str:
    return mlp_hook(layer_of(hook_in)) if layer_of(hook_in) >= 0 else ""
