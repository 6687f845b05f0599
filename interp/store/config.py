"""Configuration of a caching job (``interp cache`` maps its flags one-to-one onto it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .format import canonical_dtype

# Default shard size: about this many bytes per (shard, hook) file.
TARGET_SHARD_BYTES = 32 << 20


@dataclass
class CacheConfig:
    """What to cache, from which model and corpus, and where to."""

    model: str = "smollm2-135m"
    """Model name for :func:`interp.models.load_model` (ignored when a model object is passed)."""
    hooks: list[str] = field(default_factory=lambda: ["blocks.*.hook_resid_post"])
    """TransformerLens hook names or glob patterns; every match is stored."""
    corpus: str = "default"
    """``default`` (offline), a text/JSONL path, or ``hf:NAME[:CONFIG][:SPLIT]``."""
    n_tokens: int = 1_000_000
    """Token budget: rows stored per hook (exactly; the last sequence may be cut)."""
    context_length: int = 128
    """Tokens per model input, BOS included; must not exceed the model's ``n_ctx``."""
    batch_size: int = 16
    """Sequences per forward pass."""
    dtype: str = "float16"
    """Storage dtype: ``float16``, ``bfloat16`` or ``float32`` (aliases fp16/bf16/fp32)."""
    shard_rows: int | None = None
    """Rows per shard; default: ~32 MiB per hook file (rounded to whole sequences)."""
    prepend_bos: bool = True
    """Prepend the BOS token to every sequence."""
    skip_bos: bool = False
    """Do not store the rows of the BOS position (activation sinks dominate them)."""
    out: str = "runs/store"
    """Store directory; a partial store there is resumed."""
    device: str | None = None
    """Device to run the model on (default: CUDA if available, else CPU)."""
    model_dtype: str = "float32"
    """Dtype the model is loaded in."""
    text_field: str = "text"
    """Field holding the text in JSONL / Hugging Face corpora."""

    def __post_init__(self):
        self.hooks = [self.hooks] if isinstance(self.hooks, str) else list(self.hooks)
        if not self.hooks:
            raise ValueError("CacheConfig.hooks is empty: name at least one hook or pattern")
        self.dtype = canonical_dtype(self.dtype)
        for name in ("n_tokens", "context_length", "batch_size", "shard_rows"):
            v = getattr(self, name)
            if (v is not None or name != "shard_rows") and (type(v) is not int or v < 1):
                raise ValueError(f"CacheConfig.{name} must be a positive integer, got {v!r}")
        if self.skip_bos and not self.prepend_bos:
            raise ValueError("skip_bos=True needs prepend_bos=True (there is no BOS row to skip)")
        if self.skip_bos and self.context_length < 2:
            raise ValueError("context_length must be >= 2 when skipping the BOS row")

    @property
    def rows_per_sequence(self) -> int:
        """Rows stored per input sequence."""
        return self.context_length - (1 if self.skip_bos else 0)

    def default_shard_rows(self, row_bytes_max: int) -> int:
        """Rows per shard so that the widest hook's file is about ``TARGET_SHARD_BYTES``."""
        rps = self.rows_per_sequence
        rows = max(rps, TARGET_SHARD_BYTES // max(1, row_bytes_max) // rps * rps)
        return min(rows, -(-self.n_tokens // rps) * rps)
