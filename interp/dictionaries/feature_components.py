"""SAE / transcoder features as attribution components: splice dictionaries in, keep the error visible.

The RelP paper's sparse-feature circuits (Jafari et al. 2025, after Marks et al. 2024, "Sparse
feature circuits", arXiv 2403.19647): an activation ``x`` at a hook is rewritten as its
dictionary reconstruction plus an error term,

    f   = encode(x_in)                        # [B, T, F]   features  -> hook  blocks.L.<name>.hook_acts
    err = x - decode(f)                       # [B, T, d]   error     -> hook  blocks.L.<name>.hook_error
    x'  = decode(f) + err                     # = x: the forward pass is unchanged

(``x_in = x`` for an SAE; for a transcoder ``x_in`` is ``blocks.L.ln2.hook_normalized`` and ``x``
is ``blocks.L.hook_mlp_out``).  ``f`` and ``err`` pass through new hook points, and two
component types are registered for the duration of the splice: ``<name>_feat`` (unit_axes=1:
one component per feature) and ``<name>_error`` (unit_axes=0: one per layer, summed over d).
Every method in :mod:`interp.attribution` (activation patching, AtP, RelP, IG) then scores
features and errors unchanged::

    with splice_features(model, {5: sae5, 9: sae9}) as sp:
        r = attribution_patching(model, task, components=sp.components)   # ("sae_feat", "sae_error")
        r.scores["sae_feat"]   # [L, F]: rows of layers without a dictionary are 0
        r.scores["sae_error"]  # [L]

Patching a feature replaces ``f_i`` and decodes it, with the error of the run held as it is
(the error is its own component).  The gradient through the splice equals the model's
(d x'/d x = J_dec J_enc + (I - J_dec J_enc) = I), so upstream attributions do not change.

The attribution code iterates over every layer, so layers without a dictionary get a hook too:
their features are a zero tensor ``[B, T, F]`` (score 0) and their error is the whole activation
(all dictionaries of one splice must share the hook template and the width F).  Activation
patching therefore runs ``L * F`` patches, most of them trivially zero: use it on small
dictionaries; AtP / RelP / IG cost the same for any F.

Memory: per spliced forward, ``B*T*F`` features and ``B*T*d`` errors per layer; the attribution
methods cache them as they cache any component (``L*B*T*(F + d)`` floats per run).
"""

from __future__ import annotations

import functools
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch

from .base import SparseCoder


@dataclass(frozen=True)
class Splice:
    """What :func:`splice_features` set up (the handle yielded by the context manager)."""

    name: str
    """Prefix of the hook points and component types (``sae`` -> ``sae_feat``, ``sae_error``)."""
    d_sae: int
    """Features per layer (F)."""

    @property
    def feat(self) -> str:
        return f"{self.name}_feat"

    @property
    def error(self) -> str:
        return f"{self.name}_error"

    @property
    def components(self) -> tuple[str, str]:
        """The two component type names, for ``components=`` of any attribution method."""
        return (self.feat, self.error)

    @property
    def templates(self) -> tuple[str, str]:
        """Templates of the new hook points: ``blocks.{layer}.<name>.hook_acts`` and ``....hook_error``."""
        return tuple("blocks.{layer}." + self.name + h for h in (".hook_acts", ".hook_error"))


def _template(hook: str) -> tuple[int, str]:
    m = re.match(r"^blocks\.(\d+)\.(.+)$", hook)
    if not m:
        raise ValueError(f"dictionary hook {hook!r} is not a per-block hook (blocks.L....); only those can be spliced")
    return int(m.group(1)), "blocks.{layer}." + m.group(2)


def _check(saes: Mapping[int, SparseCoder]) -> tuple[str, str, int]:
    shapes = set()
    for layer, sae in saes.items():
        (li, ti), (lo, to) = _template(sae.cfg.hook_in), _template(sae.cfg.target_hook)
        if li != layer or lo != layer:
            raise ValueError(f"dictionary given for layer {layer} reads {sae.cfg.hook_in!r} / writes "
                             f"{sae.cfg.target_hook!r}: the layers must agree")
        shapes.add((ti, to, sae.cfg.d_sae))
    if len(shapes) != 1:  # none, or several
        raise ValueError(f"a splice needs one or more dictionaries that share their hooks up to the layer, "
                         f"with the same d_sae; got (input, output, d_sae) {sorted(shapes)}")
    return shapes.pop()


@contextmanager
def splice_features(model, saes: Mapping[int, SparseCoder] | Sequence[SparseCoder], name: str = "sae",
                    ) -> Iterator[Splice]:
    """Splice dictionaries into ``model`` and register ``<name>_feat`` / ``<name>_error`` (see module doc).

    ``saes``: ``{layer: dictionary}`` or a list (layers read from each ``cfg.hook_in``).  Everything
    (hook points, splice hooks, component types) is removed on exit, also on an exception.
    """
    from transformer_lens.hook_points import HookPoint

    from interp.attribution.components import COMPONENT_TYPES, ComponentType, register_component_type
    from interp.models.hooks import save_hook, scoped_hooks

    if not isinstance(saes, Mapping):
        saes = {_template(s.cfg.hook_in)[0]: s for s in saes}
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"splice name must be lower-case letters, digits and '_', got {name!r}")
    hook_in, hook_out, F = _check(saes)
    L = model.cfg.n_layers
    bad = [l for l in saes if not 0 <= l < L]
    if bad:
        raise ValueError(f"layers {bad} are outside the model's 0..{L - 1}")
    sp = Splice(name, F)
    taken = [n for n in sp.components if n in COMPONENT_TYPES]
    if taken:
        raise ValueError(f"component type(s) {taken} already registered: is a splice named {name!r} active? "
                         "Use another name.")
    registry = model._hook_registry
    points: dict[str, HookPoint] = {}
    for l in range(L):
        for hname in (t.format(layer=l) for t in sp.templates):
            if hname in registry:
                raise ValueError(f"hook point {hname!r} already exists on the model")
            hp = HookPoint()
            hp.name = hname
            points[hname] = hp
    inputs: dict[int, torch.Tensor] = {}

    def rewrite(x, hook, layer):
        sae = saes.get(layer)
        acts_hp, err_hp = (points[t.format(layer=layer)] for t in sp.templates)
        if sae is None:
            zeros = x.new_zeros(*x.shape[:-1], F)
            acts_hp(zeros.requires_grad_(torch.is_grad_enabled()))  # a leaf, so gradients w.r.t. it are 0
            return err_hp(x)
        x_in = inputs.pop(layer) if hook_in != hook_out else x
        f = sae.encode(x_in.flatten(0, -2).to(sae.W_dec.dtype)).acts.reshape(*x_in.shape[:-1], F)
        err = x - sae.decode(f).to(x.dtype)
        # the hook sees a node of its own: err depends on f, so were f itself decoded, d x'/d f would cancel to 0
        return sae.decode(acts_hp(f.clone())).to(x.dtype) + err_hp(err)

    fwd = []
    if hook_in != hook_out:
        fwd += [(hook_in.format(layer=l), save_hook(inputs, l)) for l in saes]
    fwd += [(hook_out.format(layer=l), functools.partial(rewrite, layer=l)) for l in range(L)]
    registry.update(points)
    try:
        register_component_type(ComponentType(sp.feat, sp.templates[0], 1,
                                              f"features of the {name} dictionaries at {hook_out}"))
        register_component_type(ComponentType(sp.error, sp.templates[1], 0,
                                              f"error of the {name} dictionaries at {hook_out} (x - decode(f))"))
        with scoped_hooks(model, fwd=fwd):
            yield sp
    finally:
        for n in sp.components:
            COMPONENT_TYPES.pop(n, None)
        for hname in points:
            registry.pop(hname, None)
        inputs.clear()


def feature_labels(sp: Splice, scores: torch.Tensor, top: int = 20) -> list[tuple[str, float]]:
    """The ``top`` features by |score| in a ``[L, F]`` score array, as ``("L5.f123", score)``."""
    flat = scores.flatten()
    idx = flat.abs().argsort(descending=True)[:top].tolist()
    return [(f"L{i // sp.d_sae}.f{i % sp.d_sae}", float(flat[i])) for i in idx]
