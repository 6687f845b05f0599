"""Tiny random-initialised models for tests: built from a config in milliseconds, no download.

Each tiny model is a real Hugging Face architecture (GPT-2, Llama, GPT-NeoX/Pythia,
Gemma 3) with a few layers and width 32-64, wrapped in TransformerLens's
``TransformerBridge`` exactly like the real models, so every analysis runs on it
unchanged.  The tokenizer is a character-level one (printable ASCII plus ``<bos>``,
``<eos>``, ``<pad>``, ``<unk>``), built offline with ``tokenizers``.

Memory: a few hundred KB per model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interp.results import check_fields

SPECIALS = ["<bos>", "<eos>", "<pad>", "<unk>"]


def char_tokenizer(vocab: list[str] | None = None, name: str = "interp-char", **special: str):
    """A character-level fast tokenizer that prepends its ``bos_token``: over ``vocab`` (single characters
    and the special tokens), by default ``SPECIALS`` and printable ASCII (vocab 99).  ``special``:
    ``bos_token=``, ``unk_token=``, ... (default ``<bos>``, ``<eos>``, ``<pad>``, ``<unk>``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = {s: i for i, s in enumerate(vocab or SPECIALS + [chr(c) for c in range(32, 127)])}
    special = special or {f"{s[1:-1]}_token": s for s in SPECIALS}  # bos_token="<bos>", ...
    bos = special["bos_token"]
    tk = Tokenizer(models.WordLevel(ids, unk_token=special["unk_token"]))
    tk.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tk.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                      special_tokens=[(bos, ids[bos])])
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, add_bos_token=True, name_or_path=name, **special)


@dataclass(frozen=True)
class TinyConfig:
    """Shape of a tiny random model."""

    arch: str = "llama"
    """One of ``gpt2``, ``llama``, ``pythia``, ``gemma3``."""
    n_layers: int = 2
    """Number of transformer blocks."""
    d_model: int = 32
    """Residual width."""
    n_heads: int = 4
    """Attention heads per layer."""
    n_kv_heads: int | None = None
    """Key/value heads (grouped-query attention); ``None`` means ``n_heads``."""
    d_mlp: int = 64
    """MLP hidden width."""
    n_ctx: int = 128
    """Maximum context length."""
    seed: int = 0
    """Seed for the random initialisation."""

    def __post_init__(self):
        check_fields(self, {"arch": TINY_ARCHS})
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")

    def hf_config(self, vocab_size: int):
        import transformers as tf

        kv = self.n_kv_heads or self.n_heads
        shape = dict(vocab_size=vocab_size, hidden_size=self.d_model, intermediate_size=self.d_mlp,
                     num_hidden_layers=self.n_layers, num_attention_heads=self.n_heads,
                     max_position_embeddings=self.n_ctx)
        config, model, extra = {  # GPT-2 reads the shape keywords through its config's attribute map
            "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_inner=self.d_mlp, resid_pdrop=0.0, embd_pdrop=0.0,
                                                           attn_pdrop=0.0)),
            "llama": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=kv, tie_word_embeddings=True)),
            "pythia": ("GPTNeoXConfig", "GPTNeoXForCausalLM", dict(hidden_dropout=0.0, attention_dropout=0.0)),
            "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", dict(num_key_value_heads=kv,
                                                                     head_dim=self.d_model // self.n_heads)),
        }[self.arch]
        return getattr(tf, config)(**shape, **extra, architectures=[model])


TINY_ARCHS = ("gpt2", "llama", "pythia", "gemma3")


def tiny_hf_model(config: TinyConfig, vocab_size: int):
    """The random-initialised Hugging Face model for ``config`` (eval mode, fp32, eager attention)."""
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):  # the caller's CPU generator state is restored on exit
        torch.manual_seed(config.seed)
        model = AutoModelForCausalLM.from_config(config.hf_config(vocab_size), attn_implementation="eager")
    return model.eval()
