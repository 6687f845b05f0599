"""Reading a TransformerBridge's wrapped modules: the Hugging Face module under a bridge component and a
norm's parameters.

A bridge component (``blocks.L.ln1``, ``blocks.L.attn.q``) wraps the original Hugging Face module as
``original_component``; calling that module runs the model's own arithmetic without firing the bridge's
hook points (so a hook that saves ``ln1``'s input is not overwritten by a recomputation).  Design:
read the original module's attributes rather than re-derive them from the bridge config, so every
architecture the bridge wraps is read the same way.  Cost: attribute reads only.
"""

from __future__ import annotations


def original(mod):
    """The Hugging Face module a bridge component wraps (``mod`` itself when it wraps none)."""
    return getattr(mod, "original_component", None) or mod


def norm_params(mod, model):
    """``(gain, bias or None, eps, is_rms)`` of a bridge norm module: the one reader of a norm's parameters
    (LRP's norm rule, LIB's transformer norms and SNMF's vocabulary projection use it); Gemma's
    ``1 + weight`` offset is applied."""
    comp = original(mod)
    w = 1.0 + comp.weight if getattr(mod, "uses_weight_offset", False) else comp.weight
    b = getattr(comp, "bias", None)
    eps = getattr(comp, "eps", getattr(comp, "variance_epsilon", getattr(model.cfg, "eps", 1e-5)))
    rms = bool(getattr(mod, "uses_rms_norm", False)) or b is None and "RMS" in type(comp).__name__
    return w, b, float(eps), rms
