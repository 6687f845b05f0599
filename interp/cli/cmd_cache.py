"""``interp cache``: run a model over a corpus and store chosen hook activations (resumable)."""

from __future__ import annotations

from interp.cli.main import emit


def register(sub) -> None:
    p = sub.add_parser(
        "cache",
        help="cache hook activations over a corpus into a memory-mapped store (resumes a partial one)",
        description="Run MODEL over a corpus and write the activations of the hooks matching PATTERN "
        "to a store directory. Re-running the same command after an interruption resumes it.",
    )
    p.add_argument("--model", default="smollm2-135m", help="model name (see `interp models`); default smollm2-135m")
    p.add_argument("--hooks", nargs="+", default=["blocks.*.hook_resid_post"], metavar="PATTERN",
                   help="TransformerLens hook names or glob patterns (default blocks.*.hook_resid_post)")
    p.add_argument("--n-tokens", type=int, default=100_000, help="token budget: rows stored per hook")
    p.add_argument("--context-length", type=int, default=128, help="tokens per sequence, BOS included")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass")
    p.add_argument("--dtype", default="float16", help="storage dtype: fp16 (default), bf16 or fp32")
    p.add_argument("--corpus", default="default",
                   help="'default' (offline, shipped), a .txt/.jsonl file or folder, or hf:NAME[:CONFIG][:SPLIT]")
    p.add_argument("--text-field", default="text", help="JSON field holding the text (JSONL / HF corpora)")
    p.add_argument("--out", required=True, help="store directory")
    p.add_argument("--shard-rows", type=int, default=None, help="rows per shard (default ~32 MiB per hook file)")
    p.add_argument("--no-bos", action="store_true", help="do not prepend BOS to each sequence")
    p.add_argument("--skip-bos", action="store_true", help="do not store the BOS position's rows")
    p.add_argument("--device", default=None, help="device (default: cuda if available, else cpu)")
    p.add_argument("--model-dtype", default="float32", help="dtype to run the model in")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    from interp.store import CacheConfig, cache_activations

    cfg = CacheConfig(
        model=args.model, hooks=args.hooks, corpus=args.corpus, n_tokens=args.n_tokens,
        context_length=args.context_length, batch_size=args.batch_size, dtype=args.dtype,
        shard_rows=args.shard_rows, prepend_bos=not args.no_bos, skip_bos=args.skip_bos, out=args.out,
        device=args.device, model_dtype=args.model_dtype, text_field=args.text_field,
    )
    store = cache_activations(cfg, progress=not args.no_progress and not args.json)
    info = store.info()
    run_info = store.manifest.get("last_run", {})
    secs = run_info.get("seconds") or 0.0
    info["last_run"] = run_info
    human = (
        f"cached {info['n_rows']:,} tokens x {len(store.hooks)} hook(s) of {info['model']} into {info['path']} "
        f"({info['bytes'] / 2**20:.1f} MiB, {info['dtype']}, {info['n_shards']} shards)"
        + (f"; this run wrote {run_info.get('rows', 0):,} rows in {secs:.1f} s "
           f"({run_info.get('rows', 0) / secs:,.0f} tok/s)" if secs else "")
    )
    emit(args, info, human)
    return 0
