"""``interp cache``: run a model over a corpus and store chosen hook activations (resumable); the
store's :class:`~interp.store.summary.StoreSummary` goes to ``results.json`` and ``report.html`` in it."""

from __future__ import annotations

from interp.cli.common import command, config_defaults, default_of, flag_settings, same, write_result
from interp.store import CacheConfig, cache_activations
from interp.store.format import DTYPES, canonical_dtype
from interp.store.summary import summarize_store


def register(sub) -> None:
    d = lambda f: default_of(CacheConfig, f)  # noqa: E731
    p = command(
        sub, "cache",
        help="cache hook activations over a corpus into a memory-mapped store (resumes a partial one)",
        description="Run MODEL over a corpus and write the activations of the hooks matching PATTERN "
        "to a store directory (--out). Re-running the same command after an interruption resumes it.",
        out=d("out"), model=d("model"), func=run,
    )
    p.add_argument("--hooks", nargs="+", metavar="PATTERN",
                   help="TransformerLens hook names or glob patterns")
    p.add_argument("--dtype", type=canonical_dtype, choices=sorted(DTYPES),
                   help="storage dtype (aliases fp16, bf16, fp32)")
    p.add_argument("--no-bos", action="store_true", help="do not prepend BOS to each sequence")
    p.add_argument("--skip-bos", action="store_true", help="do not store the BOS position's rows")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    config_defaults(p, *CONFIG_FLAGS, choices={"model_dtype": ["float32", "bfloat16", "float16"]})


_CACHE = {"seq_len": "context_length", **same("model", "hooks", "n_tokens", "batch_size", "dtype", "corpus",
                                             "text_field", "shard_rows", "model_dtype", "out", "device")}
CONFIG_FLAGS = [(("cache",), "interp.store:CacheConfig", _CACHE)]
"""(command path, config class, flag dest -> field): checked by tests/test_cli_grammar.py."""


def run(args) -> int:
    cfg = CacheConfig(**flag_settings(args, CONFIG_FLAGS[0]), prepend_bos=not args.no_bos, skip_bos=args.skip_bos)
    store = cache_activations(cfg, progress=not args.no_progress and not args.json)
    return write_result(args, summarize_store(store))
