"""Fast activation capture: the bridge's Hugging Face model run directly, under plain torch hooks.

A ``TransformerBridge`` wraps every Hugging Face submodule in a bridge component that carries
TransformerLens ``HookPoint``s.  Those wrappers cost Python time on every call, which a caching
job pays on every batch although it only reads a few activations.  This module removes that
cost for the hook points that are the plain input or output of one Hugging Face module.
Measured on SmolLM2-135M, 1 thread, batches of 8 x 128 on a shared 2-core CPU: caching 30
``hook_resid_post`` this way takes 1.03-1.08x less process CPU time than through the bridge
(bench/bench_cache.py; the bridge's own forward is 1.02x-1.25x the Hugging Face model's,
depending on the run -- the gap is Python overhead and shrinks with larger batches).

Algorithm:

1. **Shadow model** (:func:`hf_model`).  Build the bridge's Hugging Face class from its config
   on the ``meta`` device (no allocation, no random init), then point every parameter and
   buffer at the bridge's own tensor (the name with ``._original_component`` removed).  The
   shadow shares storage with the bridge -- no copy, edits to the weights show in both -- and
   holds no bridge component, no ``HookPoint`` and no hook of the user's.
2. **Mapping** (:func:`plan_capture`).  Every TransformerLens name resolves to the bridge's
   native hook point ``<component>.hook_in`` / ``<component>.hook_out`` (e.g.
   ``blocks.3.hook_resid_post`` -> ``blocks.3.hook_out``, ``blocks.3.attn.hook_z`` ->
   ``blocks.3.attn.o.hook_in``, on Gemma 3 ``blocks.3.hook_attn_out`` ->
   ``blocks.3.ln1_post.hook_out``).  When that component wraps one module of the Hugging Face
   tree, the activation is that module's first input (``hidden_states``) or its output (the
   first element of a tuple), reshaped to the bridge's per-token shape (``[B, T, H, d_head]``
   for ``hook_z`` / ``hook_q`` ...).  Other hook points (``hook_pattern``, ``hook_rot_q``,
   ``ln.hook_scale``, the split q/k/v of GPT-2's fused ``c_attn``) have no such module: they
   are *unmapped*, and a job that needs one runs on the bridge.
3. **Check** (:func:`verify_plan`).  The mapping is a claim about how the bridge defines each
   hook; it is checked, not trusted: the shadow and the bridge run the same probe tokens and
   every captured activation must equal the bridge's ``run_with_cache`` value (bit for bit for
   the store's ``auto`` choice -- true of Llama, Gemma 3 and Pythia, whose bridge attention calls
   the Hugging Face code; GPT-2's bridge reimplements the fused-QKV attention and differs by
   ~1e-8, so ``auto`` keeps it on the bridge and only a forced ``hf`` takes it, at 1e-5 of scale).  A hook that differs, fires twice, or does not
   fire is unmapped.
4. **Capture** (:func:`capture`).  Forward hooks (and pre-hooks for inputs) on the mapped
   modules only, the pass under the caller's ``inference_mode``, with the bridge's inputs
   (``input_ids`` alone: no attention mask, default positions -- what ``bridge(tokens)`` hands
   its driver) plus ``use_cache=False``.  When the last requested activation has been seen a
   private exception ends the pass, so later layers, the final norm and the unembedding never
   run.  The hooks are removed in ``finally``.

The bridge path stays the reference: ``CacheConfig(capture="bridge")`` (``interp cache
--capture bridge``) forces it, and tests/test_cache_capture.py checks that both paths agree for
every mapped hook kind on the four tiny architectures and on SmolLM2.

Memory: no second copy of the weights (the shadow's tensors are the bridge's); per pass the
captured activations the caller keeps, as on the bridge path.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

_ORIG = "._original_component"


class CaptureUnavailable(ValueError):
    """The fast path cannot serve this job (unmapped hooks or a model it cannot shadow)."""


class _StopCapture(Exception):
    """Raised by the last capture hook of a pass to end the forward early."""


@dataclass(frozen=True)
class Site:
    """Where one TransformerLens hook point lives in the Hugging Face model."""

    hook: str
    """TransformerLens hook name (``blocks.3.hook_resid_post``)."""
    module: str
    """Path of the Hugging Face module in the shadow model (``model.layers.3``)."""
    port: str
    """``in``: the module's first input (``hidden_states``); ``out``: its output (first element of a tuple)."""


@dataclass
class CapturePlan:
    """A shadow Hugging Face model and where each requested hook point is found in it."""

    model: nn.Module
    """The shadow model (shares the bridge's tensors)."""
    sites: dict[str, Site]
    """Mapped hooks, in the order requested."""
    unmapped: dict[str, str] = field(default_factory=dict)
    """Hooks the fast path cannot serve, with the reason."""
    row_shapes: dict[str, list[int]] = field(default_factory=dict)
    """Per-token shape of each hook (from the bridge), set by :func:`verify_plan`."""
    order: list[str] = field(default_factory=list)
    """Firing order of the mapped hooks in the shadow's forward pass, set by :func:`verify_plan`."""

    @property
    def complete(self) -> bool:
        """Every requested hook is mapped (and, after :func:`verify_plan`, checked)."""
        return not self.unmapped


def _strip(name: str) -> str:
    return name.replace(_ORIG, "")


def _original_model(bridge) -> nn.Module:
    m = getattr(bridge, "original_model", None)
    if not isinstance(m, nn.Module):
        raise CaptureUnavailable("the bridge exposes no Hugging Face original_model")
    return m


def hf_model(bridge, attn_implementation: str | None = None) -> nn.Module:
    """A Hugging Face model of the bridge's class sharing every parameter and buffer with it.

    Its config is a copy of the bridge's (``attn_implementation``: default the bridge's own).
    Raises :class:`CaptureUnavailable` when a tensor of the fresh model has no counterpart in
    the bridge (an architecture the bridge restructures beyond wrapping).
    """
    orig = _original_model(bridge)
    tensors: dict[str, torch.Tensor] = {}
    for n, p in orig.named_parameters(remove_duplicate=False):
        tensors.setdefault(_strip(n), p)
    for n, b in orig.named_buffers(remove_duplicate=False):
        tensors.setdefault(_strip(n), b)
    cfg = copy.deepcopy(orig.config)  # the shadow's modules keep a reference: never share the bridge's
    attn = attn_implementation or getattr(orig.config, "_attn_implementation", None)
    try:
        with torch.device("meta"):
            shadow = type(orig)._from_config(cfg, attn_implementation=attn)
    except Exception as e:  # noqa: BLE001 -- any failure means: no fast path, say why
        raise CaptureUnavailable(f"cannot rebuild {type(orig).__name__} from its config: {e}") from e
    missing = []
    for kind, named in (("param", shadow.named_parameters(remove_duplicate=False)),
                        ("buffer", shadow.named_buffers(remove_duplicate=False))):
        for n, _ in list(named):
            src = tensors.get(n)
            if src is None:
                missing.append(n)
                continue
            mod_name, _, attr = n.rpartition(".")
            mod = shadow.get_submodule(mod_name)
            (mod._parameters if kind == "param" else mod._buffers)[attr] = src
    if missing:
        raise CaptureUnavailable(f"the bridge has no tensor for {missing[:3]} of a fresh {type(orig).__name__}")
    # attributes computed from buffers at init (e.g. rotary ``original_inv_freq`` kept as a plain attribute)
    for name, mod in shadow.named_modules():
        for attr, val in list(vars(mod).items()):
            if isinstance(val, torch.Tensor) and val.device.type == "meta":
                src = tensors.get(f"{name}.{attr}" if name else attr)
                if src is None:
                    raise CaptureUnavailable(f"{name}.{attr} of the fresh model has no value in the bridge")
                setattr(mod, attr, src)
    shadow.eval()
    return shadow


def _module_paths(orig: nn.Module, shadow_paths) -> dict[int, str]:
    """id(Hugging Face module) -> its path in the shadow (the bridge wrappers' names removed)."""
    paths: dict[int, str] = {}
    for n, mod in orig.named_modules(remove_duplicate=False):
        p = _strip(n)
        if p in shadow_paths:
            paths.setdefault(id(mod), p)
    return paths


def plan_capture(bridge, hooks: list[str], shadow: nn.Module | None = None) -> CapturePlan:
    """Map TransformerLens ``hooks`` to modules of a shadow model (built if not given)."""
    if shadow is None:
        shadow = hf_model(bridge)
    shadow_modules = dict(shadow.named_modules())
    paths = _module_paths(_original_model(bridge), shadow_modules)
    sites: dict[str, Site] = {}
    unmapped: dict[str, str] = {}
    hook_dict = bridge.hook_dict  # rebuilt by the bridge on every access: read it once
    for h in hooks:
        hp = hook_dict.get(h)
        native = getattr(hp, "name", None) or h
        comp_path, _, port = native.rpartition(".")
        if port not in ("hook_in", "hook_out") or not comp_path:
            unmapped[h] = f"{native} is not the input or output of a module"
            continue
        try:
            comp = bridge.get_submodule(comp_path)
        except AttributeError:
            unmapped[h] = f"no bridge component {comp_path}"
            continue
        inner = getattr(comp, "_original_component", None)
        path = paths.get(id(inner)) if inner is not None else None
        if path is None or path not in shadow_modules:
            unmapped[h] = f"{comp_path} wraps no module of the Hugging Face model"
            continue
        sites[h] = Site(h, path, "in" if port == "hook_in" else "out")
    return CapturePlan(shadow, sites, unmapped)


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


@contextmanager
def capture(plan: CapturePlan, fns: dict[str, Callable[[torch.Tensor], None]], stop: bool = True):
    """Hooks on the shadow model calling ``fns[hook](activation [B, T, *row_shape])``.

    Yields ``run(tokens)``, one forward pass over ``tokens`` ``[B, T]``; with ``stop`` it ends
    once every hook in ``fns`` has fired.  Every torch hook is removed on exit, also after an
    exception.  Hooks without a row shape in the plan get the module's tensor as it is.
    """
    unknown = [h for h in fns if h not in plan.sites]
    if unknown:
        raise CaptureUnavailable(f"hook(s) {unknown} are not mapped to the Hugging Face model: "
                                 + "; ".join(plan.unmapped.get(h, "not in the plan") for h in unknown))
    fired: set[str] = set()
    n_wanted = len(fns)

    def deliver(h: str, t) -> None:
        if not isinstance(t, torch.Tensor):
            raise CaptureUnavailable(f"{h}: the module gave {type(t).__name__}, not a tensor")
        shape = plan.row_shapes.get(h)
        if shape is not None:
            t = t.reshape(t.shape[0], t.shape[1], *shape)
        fns[h](t)
        fired.add(h)
        if stop and len(fired) == n_wanted:
            raise _StopCapture

    handles = []
    try:
        for h in fns:
            site = plan.sites[h]
            mod = plan.model.get_submodule(site.module)
            if site.port == "in":
                def pre(_m, args, kwargs, h=h):
                    deliver(h, kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])
                handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
            else:
                def post(_m, _args, out, h=h):
                    deliver(h, _first(out))
                handles.append(mod.register_forward_hook(post))

        def run(tokens: torch.Tensor) -> None:
            fired.clear()
            try:
                plan.model(input_ids=tokens, use_cache=False)
            except _StopCapture:
                pass

        yield run
    finally:
        for hd in handles:
            hd.remove()


def verify_plan(bridge, plan: CapturePlan, tokens: torch.Tensor, reference: dict[str, torch.Tensor],
                rtol: float = 0.0) -> CapturePlan:
    """Check every mapped hook against the bridge's value on ``tokens``; move failures to ``unmapped``.

    ``reference[h]`` is the bridge's activation ``[B, T, ...]`` on ``tokens`` (e.g. from
    ``run_with_cache``).  A hook passes when it fires once and its value, reshaped to the
    reference's shape, is within ``rtol * max(1, max|ref|)`` of the reference everywhere
    (``rtol=0``: bit for bit).
    Sets ``plan.row_shapes`` and ``plan.order`` (firing order in the shadow's pass).
    """
    got: dict[str, list[torch.Tensor]] = {}
    order: list[str] = []
    mapped = [h for h in plan.sites if h in reference]
    for h in plan.sites:
        if h not in reference:
            plan.unmapped[h] = "no bridge reference value to check it against"
    plan.row_shapes = {}  # record the modules' raw tensors; the reshape is checked below

    def rec(h):
        def fn(t):
            if h not in got:
                order.append(h)
            got.setdefault(h, []).append(t.detach().clone())
        return fn

    # stopped after the last hook, as the real passes are (a module called again later never matters)
    with torch.inference_mode(), capture(plan, {h: rec(h) for h in mapped}, stop=True) as run:
        run(tokens)
    for h in mapped:
        vals = got.get(h, [])
        ref = reference[h]
        if len(vals) != 1:
            plan.unmapped[h] = f"the module fired {len(vals)} times in one pass (need exactly once)"
            continue
        v = vals[0]
        if v.shape[:2] != ref.shape[:2] or v.numel() != ref.numel():
            plan.unmapped[h] = f"shape {tuple(v.shape)} does not split into the bridge's {tuple(ref.shape)}"
            continue
        a, b = v.reshape(ref.shape).float(), ref.float()
        tol = rtol * max(1.0, float(b.abs().max()))
        err = float((a - b).abs().max()) if a.numel() else 0.0
        if not err <= tol:
            plan.unmapped[h] = f"differs from the bridge's value by {err:.3g} (> {tol:.3g})"
    plan.row_shapes = {h: list(reference[h].shape[2:]) for h in mapped if h not in plan.unmapped}
    plan.order = [h for h in order if h not in plan.unmapped]
    return _prune(plan)


def _prune(plan: CapturePlan) -> CapturePlan:
    for h in plan.unmapped:
        plan.sites.pop(h, None)
    plan.order = [h for h in plan.order if h in plan.sites]
    return plan
