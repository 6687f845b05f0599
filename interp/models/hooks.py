"""Addressing activations by TransformerLens hook name, and scoped hooks.

TransformerLens hook names (``blocks.8.hook_resid_post``, ``blocks.3.attn.hook_z``,
``blocks.5.mlp.hook_post``) are interp's one address for an activation.  A
TransformerBridge exposes each hook point under its native name (``blocks.8.hook_out``)
and its TransformerLens alias (``blocks.8.hook_resid_post``); :func:`resolve_hooks`
expands glob patterns over both and returns one TransformerLens name per hook point,
in layer order.

:func:`scoped_hooks` adds forward/backward hooks for the duration of a ``with`` block and
removes them in ``finally``, so an exception never leaves hooks on the user's model.

Cost: :func:`resolve_hooks` and :func:`scoped_hooks` read the bridge's ``hook_dict`` (rebuilt on every
access, milliseconds on a 30-layer model) once or twice per call, never once per name.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from contextlib import contextmanager
from typing import Callable, Iterable, Sequence


class HookNotFoundError(KeyError):
    """A hook name or pattern matched no hook point on the model."""

    def __str__(self):  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


def layer_of(hook: str) -> int:
    """The block index ``L`` of a hook ``blocks.L....``; -1 for a hook outside the blocks (embeddings,
    ``ln_final``, ``unembed``)."""
    m = re.match(r"blocks\.(\d+)\.", hook)
    return int(m.group(1)) if m else -1


def _layer_key(name: str) -> tuple[int, int]:
    if layer_of(name) >= 0:
        return (1, layer_of(name))
    return (0, 0) if ("embed" in name and "unembed" not in name) else (2, 0)


#: Components are addressed by hook name: a head is ``blocks.L.attn.hook_z[h]`` (its slice of
#: ``hook_z``), an MLP ``blocks.L.hook_mlp_out``.  The display form is ``L{l}H{h}`` / ``MLP{l}``.
HEAD_RE = re.compile(r"^blocks\.(\d+)\.attn\.hook_z\[(\d+)\]$")
MLP_RE = re.compile(r"^blocks\.(\d+)\.hook_mlp_out$")
_HEAD_LABEL, _MLP_LABEL = re.compile(r"^L(\d+)H(\d+)$"), re.compile(r"^MLP(\d+)$")


def head_hook(layer: int, head: int) -> str:
    """The data address of one attention head: ``blocks.{layer}.attn.hook_z[{head}]``."""
    return f"blocks.{int(layer)}.attn.hook_z[{int(head)}]"


def mlp_hook(layer: int) -> str:
    """The data address of one MLP's output: ``blocks.{layer}.hook_mlp_out``."""
    return f"blocks.{int(layer)}.hook_mlp_out"


def mlp_post_hook(layer: int) -> str:
    """One MLP's hidden activation after the nonlinearity (the neurons): ``blocks.{layer}.mlp.hook_post``."""
    return f"blocks.{int(layer)}.mlp.hook_post"


def parse_component(name: str) -> tuple[str, int, tuple[int, ...]]:
    """``blocks.9.attn.hook_z[3]`` (or ``L9H3``) -> ``("attn_head", 9, (3,))``;
    ``blocks.4.hook_mlp_out`` (or ``MLP4``) -> ``("mlp", 4, ())``.  Anything else is a ``ValueError``."""
    for rx, kind in ((HEAD_RE, "attn_head"), (MLP_RE, "mlp"), (_HEAD_LABEL, "attn_head"),
                     (_MLP_LABEL, "mlp")):
        m = rx.match(name)
        if m:
            layer, *unit = map(int, m.groups())
            return kind, layer, tuple(unit)
    raise ValueError(f"cannot parse component {name!r}; expected blocks.L.attn.hook_z[H], blocks.L.hook_mlp_out, "
                     "L<l>H<h> or MLP<l>")


def component_label(name: str) -> str:
    """Display form: ``blocks.9.attn.hook_z[2]`` -> ``L9H2``, ``blocks.4.hook_mlp_out`` -> ``MLP4``;
    other names unchanged."""
    try:
        kind, layer, unit = parse_component(name)
    except ValueError:
        return name
    return f"L{layer}H{unit[0]}" if kind == "attn_head" else f"MLP{layer}"


def did_you_mean(name: str, names: Sequence[str]) -> str:
    """`` (did you mean a, b, c?)`` with the closest of ``names`` to ``name``, or "" when none is close."""
    near = difflib.get_close_matches(name, names, n=3)
    return f" (did you mean {', '.join(near)}?)" if near else ""


def head_label(layer: int, head: int) -> str:
    """Display form of one head: ``L{layer}H{head}``."""
    return component_label(head_hook(layer, head))


def hook_names(model) -> list[str]:
    """Every hook point of ``model``, one TransformerLens-style name each, in layer order."""
    hd = model.hook_dict  # rebuilt by the bridge on every access: read it once
    seen = {id(hp): name for name, hp in hd.items()}  # later entries, the TransformerLens aliases, win
    order = {n: i for i, n in enumerate(hd)}
    return sorted(seen.values(), key=lambda n: (_layer_key(n), order[n]))


def resolve_hooks(model, patterns: str | Sequence[str]) -> list[str]:
    """Expand hook names / glob patterns (``blocks.*.hook_resid_post``) to hook names.

    Raises :class:`HookNotFoundError` naming every pattern that matches nothing, with
    close matches as hints.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise HookNotFoundError("no hook names given")
    hd = model.hook_dict  # a bridge rebuilds this dict on every access (~0.3 ms): read it once
    tl = hook_names(model)
    canonical = {id(hd[name]): name for name in tl}
    hits = {pat: [n for n in hd if fnmatch.fnmatchcase(n, pat)] for pat in patterns}
    missing = [pat for pat, names in hits.items() if not names]
    chosen = {canonical[id(hd[n])] for names in hits.values() for n in names}
    if missing:
        raise HookNotFoundError(
            "no hook point matches " + "; ".join(f"{p!r}" + did_you_mean(p, tl) for p in missing)
            + f". This model has {len(tl)} hook points, e.g. blocks.0.hook_resid_post, "
            "blocks.0.attn.hook_z, blocks.0.mlp.hook_post; list them with interp.models.hook_names(model)."
        )
    return [n for n in tl if n in chosen]  # in layer order


def save_hook(store: dict, key, keep: Callable | None = None) -> Callable:
    """A forward hook that puts ``keep(activation)`` (default: the activation itself, still in the
    autograd graph) in ``store[key]`` and returns the activation unchanged."""

    def fn(x, hook):
        store[key] = keep(x) if keep else x
        return x

    return fn


@contextmanager
def scoped_hooks(
    model,
    fwd: Iterable[tuple[str, Callable]] = (),
    bwd: Iterable[tuple[str, Callable]] = (),
):
    """Add forward and backward hooks (``(name, fn(tensor, hook))`` pairs) for a ``with`` block.

    The hooks are removed on exit, also when the block raises.
    """
    fwd, bwd = list(fwd), list(bwd)
    hd = model.hook_dict  # a bridge rebuilds this dict on every access (ms on a 30-layer model): read it once
    missing = [name for name, _ in fwd + bwd if name not in hd]
    if missing:
        resolve_hooks(model, missing)  # raises with a helpful message
    # The bridge's context removes exactly the hooks it added (outer scopes keep theirs).
    with model.hooks(fwd_hooks=fwd, bwd_hooks=bwd):
        yield model
