"""Steering vectors: the typed object, its file format, and the scoped hook that applies it.

A :class:`SteeringVector` is a direction ``v`` at one TransformerLens hook (``blocks.L.hook_resid_post``,
``blocks.L.mlp.hook_post``, ...) plus how it is applied (``mode``):

* ``add`` (contrastive activation addition, SAE/SNMF feature addition): ``h <- h + s v`` at every position.
* ``renorm`` (GrAInS, Nguyen et al. 2025): ``h' = h + s v``, then ``h <- h' ||h|| / ||h'||`` per position
  (the norm over the hidden axis), so each hidden state keeps its norm and only its direction turns.
* ``clamp`` (SAE latent clamping): the latent ``a(h) = relu(w_enc . h + b)`` is set to ``s``:
  ``h <- h + (s - a(h)) v`` with ``v`` the latent's decoder row (exact for a ReLU SAE's reconstruction).

:func:`steer` is a context manager: the hook is added with :func:`interp.models.scoped_hooks` and removed on
exit, also when the block raises.  Files: ``<path>.safetensors`` (``vector`` and, for clamping, ``encoder``)
plus ``<path>.json`` (hook, layer, method, mode, model weight hash, meta); :func:`load_vector` checks the
hash against the model it is given.  Cost: one ``[B, T, d]`` elementwise pass per hooked forward.
"""

from __future__ import annotations

import json
import math
import numbers
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from interp.models import resolve_hooks, scoped_hooks, weight_hash
from interp.results import check_fields, write_json

MODES = ("add", "renorm", "clamp")
METHODS = ("mean_diff", "grains", "sae", "transcoder", "snmf")
SCHEMA_VERSION = 1
_TENSORS = ("vector", "encoder")
"""The fields written to the ``.safetensors`` file; every other field goes to the ``.json``."""


class ModelMismatchError(ValueError):
    """The steering vector was built on a model with other weights."""


@dataclass
class SteeringVector:
    """A direction at one hook and how to apply it."""

    vector: torch.Tensor
    """``[d]`` float32: the direction added (``add``, ``renorm``) or the decoder row (``clamp``)."""
    hook_name: str
    """TransformerLens hook it is applied at, e.g. ``blocks.15.hook_resid_post``."""
    layer: int
    """Block index of ``hook_name`` (``-1`` for hooks outside the blocks)."""
    method: str
    """Which builder made it: one of :data:`METHODS`."""
    model_hash: str
    """:func:`interp.models.load.weight_hash` of the model it was built on."""
    mode: str = "add"
    """How :func:`steer` applies it: one of :data:`MODES`."""
    encoder: torch.Tensor | None = None
    """``[d]`` encoder row ``w_enc`` of the latent (``clamp`` only)."""
    encoder_bias: float = 0.0
    """``b`` in ``a(h) = relu(w_enc . h + b)`` (``clamp`` only; the SAE's ``b_dec`` folded in)."""
    meta: dict = field(default_factory=dict)
    """JSON-able provenance: prompts, chosen tokens/latent, build cost (``forward_passes``, ``backward_passes``,
    ``seconds``), hyperparameters."""

    def __post_init__(self):
        check_fields(self, choices={"method": METHODS, "mode": MODES})
        self.vector = v = torch.as_tensor(self.vector).detach().float().cpu()
        if v.ndim != 1:
            raise ValueError(f"a steering vector is 1-D [d], got shape {tuple(v.shape)}")
        if not torch.isfinite(v).all():
            raise ValueError("the steering vector has non-finite entries")
        if self.mode == "clamp":
            if self.encoder is None:
                raise ValueError("mode 'clamp' needs the latent's encoder row (encoder=...)")
            self.encoder = e = torch.as_tensor(self.encoder).detach().float().cpu()
            if e.shape != v.shape:
                raise ValueError(f"encoder row {tuple(e.shape)} and decoder row {tuple(v.shape)} differ in shape")

    def save(self, path: str | Path) -> Path:
        """Write ``path.safetensors`` and ``path.json`` (``path`` without suffix); returns the JSON path."""
        p = _stem(path)
        info = {"kind": "steering_vector", "schema_version": SCHEMA_VERSION, "d": len(self.vector),
                **{f.name: getattr(self, f.name) for f in fields(self) if f.name not in _TENSORS}}
        js = write_json(info, p.with_suffix(".json"))  # the one JSON writer; it makes the folder
        tensors = {k: getattr(self, k).contiguous() for k in _TENSORS if getattr(self, k) is not None}
        save_file(tensors, str(p.with_suffix(".safetensors")))
        return js


def _stem(path: str | Path) -> Path:
    """``path`` without a ``.json`` / ``.safetensors`` suffix: the name both files of a vector share."""
    return Path(path).with_suffix("") if Path(path).suffix in (".json", ".safetensors") else Path(path)


def load_vector(path: str | Path, model=None) -> SteeringVector:
    """Read a vector written by :meth:`SteeringVector.save`; with ``model``, refuse one built on other weights."""
    js, st = _stem(path).with_suffix(".json"), _stem(path).with_suffix(".safetensors")
    if not (js.exists() and st.exists()):
        raise FileNotFoundError(f"steering vector file {js if not js.exists() else st} does not exist")
    info = json.loads(js.read_text())
    if info.get("kind") != "steering_vector":
        raise ValueError(f"{js} is not a steering vector (kind={info.get('kind')!r})")
    if info.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{js}: schema_version {info.get('schema_version')} is not {SCHEMA_VERSION}")
    names = {f.name for f in fields(SteeringVector)} - set(_TENSORS)
    vec = SteeringVector(**load_file(str(st)), **{k: v for k, v in info.items() if k in names})
    if model is not None:
        check_model(model, vec)
    return vec


def check_model(model, vec: SteeringVector) -> None:
    """Raise :class:`ModelMismatchError` / ``HookNotFoundError`` / ``ValueError`` if ``vec`` cannot steer ``model``."""
    h = weight_hash(model)
    if h != vec.model_hash:
        raise ModelMismatchError(f"steering vector ({vec.method}, {vec.hook_name}) was built on a model with weight "
                                 f"hash {vec.model_hash}, but this model's hash is {h}; rebuild it on this model")
    resolve_hooks(model, [vec.hook_name])  # HookNotFoundError with hints when the model lacks it


@contextmanager
def steer(model, vector: SteeringVector, strength: float):
    """``with steer(model, vector, s): model(tokens)`` runs steered; the hook is removed on exit (also on errors).

    Raises :class:`ModelMismatchError` for a vector built on other weights, ``HookNotFoundError`` for a hook the
    model lacks and ``ValueError`` for a non-finite strength.  The hook applies ``vector`` at ``strength``
    as its ``mode`` says (see the module doc).
    """
    if not isinstance(vector, SteeringVector):
        raise TypeError(f"steer() needs a SteeringVector, got {type(vector).__name__}")
    check_model(model, vector)
    s = float(strength) if isinstance(strength, numbers.Real) else math.nan
    if not math.isfinite(s):
        raise ValueError(f"steering strength must be a finite number, got {strength!r}")
    v = vector.vector.to(next(model.parameters()).device)
    enc = None if vector.encoder is None else vector.encoder.to(v.device)

    def fn(x, hook=None):
        if x.shape[-1] != v.shape[0]:
            raise ValueError(f"steering vector has width {v.shape[0]} but {vector.hook_name} has width "
                             f"{x.shape[-1]}")
        if vector.mode == "clamp":  # the latent a(x) set to s
            return x + (s - torch.relu(x @ enc.to(x.dtype) + vector.encoder_bias))[..., None] * v.to(x.dtype)
        y = x + s * v.to(x.dtype)
        if vector.mode == "renorm":
            # ||y|| is 0 only if s v = -x exactly; the clamp keeps that case finite (it returns 0 there).
            return y * (x.norm(dim=-1, keepdim=True) / y.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny))
        return y

    with scoped_hooks(model, fwd=[(vector.hook_name, fn)]):
        yield model
