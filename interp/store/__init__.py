"""Activation store: cache hook activations of a model over a corpus, read them back memory-mapped.

See :mod:`interp.store.format` for the on-disk layout and crash-safety protocol,
:mod:`interp.store.cache` for the caching job, :mod:`interp.store.reader` for reading and
:mod:`interp.store.corpus` for corpora (including the offline default).
"""

from .cache import cache_activations, probe_hooks
from .config import CacheConfig
from .corpus import Corpus, CorpusError, count_tokens, load_corpus, token_sequences
from .format import CorruptShardError, StoreError, canonical_dtype
from .reader import ActivationStore, RowView
from .writer import write_store

__all__ = [
    "ActivationStore", "CacheConfig", "CorruptShardError", "Corpus", "CorpusError", "RowView", "StoreError",
    "cache_activations", "canonical_dtype", "count_tokens", "load_corpus", "probe_hooks", "token_sequences",
    "write_store",
]
