"""Caching throughput: interp's store vs a plain forward pass, the naive way, and SAELens.

All contenders process the same token batches (the offline default corpus, packed into
``context_length`` sequences with BOS) on the same model and hooks, in one run, with the same
intra-op thread count (``--threads``, passed to the SAELens subprocess too):

* ``plain_bridge``: ``bridge(tokens)`` with no hooks (the TransformerBridge's forward);
* ``plain_hf``: the bridge's Hugging Face model run directly (:func:`interp.models.lean.hf_model`,
  sharing the weights), full forward with logits, ``use_cache=False``, no hooks.  This is the
  faster of the two plain passes and the honest ceiling for ">= 0.85 of a plain forward";
* ``interp``: :func:`interp.store.cache_activations` into a fresh store (fp16, fsync'd shards,
  CRC-32, manifest).  The
  loop time comes from the manifest; end-to-end (``_total``) adds model-side setup: the probe
  pass, the fast path's check, weight hash, manifest;
* ``naive``: ``run_with_cache(names_filter=hooks)`` then ``torch.save`` of the fp16 rows;
* ``saelens``: SAELens's ``CacheActivationsRunner`` in its own venv (``--saelens-python``),
  when that venv exists (sae-lens needs transformer-lens < 4).  Its HookedTransformer path needs
  a hub and does not know SmolLM2, so it runs SAELens's ``AutoModelForCausalLM`` path
  (``HookedProxyLM``: the raw Hugging Face model, a torch hook on ``model.layers.L`` and a stop
  after it) on the same dequantised local weights, one hook per run (see ``SAELENS_SCRIPT``);
  ``interp_1hook`` is timed on that same single hook for the ratio.

Each contender runs ``--repeats`` times interleaved; the best time counts (the CPU is shared).
Process CPU time (all threads) is recorded beside wall time: it is less sensitive to other
users' load.  Ratios above 1 mean interp is faster.

    python bench/bench_cache.py --model smollm2-135m --n-tokens 4096 --context-length 128 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp.models import load_model, resolve_hooks  # noqa: E402
from interp.models.lean import hf_model  # noqa: E402
from interp.store import CacheConfig, cache_activations, load_corpus, token_sequences  # noqa: E402


def machine() -> dict:
    import importlib.metadata as md

    cpu = "?"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    vers = {p: md.version(p) for p in ("torch", "transformer-lens", "transformers", "numpy")}
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(), "load_avg": os.getloadavg(), **vers}


SAELENS_SCRIPT = r"""
import json, sys, time, tempfile, torch
cfg_in = json.loads(sys.argv[1])
torch.set_num_threads(cfg_in["threads"])
import sae_lens
from sae_lens import CacheActivationsRunner, CacheActivationsRunnerConfig
from datasets import Dataset
ds = Dataset.from_dict({"input_ids": cfg_in["tokens"]})
out = tempfile.mkdtemp()
# SAELens's own AutoModelForCausalLM path (HookedProxyLM over the HF model, loaded from the local
# dequantised folder): its HookedTransformer path needs a hub and does not know SmolLM2.
cfg = CacheActivationsRunnerConfig(
    dataset_path="unused", model_name=cfg_in["weights"], model_class_name="AutoModelForCausalLM",
    hook_name=cfg_in["hook"], d_in=cfg_in["d"], training_tokens=cfg_in["n_tokens"], context_size=cfg_in["ctx"],
    model_batch_size=cfg_in["batch"], dtype="float16", device="cpu", new_cached_activations_path=out + "/acts",
    shuffle=False, prepend_bos=False, buffer_size_gb=cfg_in["n_tokens"] * cfg_in["d"] * 2 / 1e9)
t0 = time.perf_counter()
runner = CacheActivationsRunner(cfg, override_dataset=ds)
t = time.perf_counter()
c = time.process_time()
ds_out = runner.run()
secs = time.perf_counter() - t
print(json.dumps({"seconds": secs, "cpu_seconds": time.process_time() - c, "load_seconds": t - t0, "sae_lens": sae_lens.__version__,
                  "tokens_cached": len(ds_out) * cfg_in["ctx"]}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--hooks", nargs="+", default=["blocks.*.hook_resid_post"])
    ap.add_argument("--n-tokens", type=int, default=4096)
    ap.add_argument("--context-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--saelens-python", default="/work/venv-saelens/bin/python")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_cache.json"),
                    help="write the report here as JSON ('' to skip)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()

    model = load_model(args.model, device="cpu")
    hooks = resolve_hooks(model, args.hooks)
    C, B = args.context_length, args.batch_size
    n_seq = -(-args.n_tokens // C)
    seqs = [s for _, s in zip(range(n_seq), token_sequences(load_corpus("default"), model.tokenizer, C))]
    batches = [torch.tensor(seqs[i : i + B]) for i in range(0, n_seq, B)]
    n_tok = n_seq * C
    tmp = Path(tempfile.mkdtemp(prefix="bench_cache_"))

    cpu: dict[str, list[float]] = {}  # process CPU seconds: robust to other users' load

    def cpu_timed(key):
        def deco(fn):
            def run(*a):
                c = time.process_time()
                r = fn(*a)
                cpu.setdefault(key, []).append(time.process_time() - c)
                return r
            return run
        return deco

    @cpu_timed("plain_bridge")
    def plain_bridge():
        t = time.perf_counter()
        with torch.inference_mode():
            for tok in batches:
                model(tok)
        return time.perf_counter() - t

    shadow = hf_model(model)

    @cpu_timed("plain_hf")
    def plain_hf():
        t = time.perf_counter()
        with torch.inference_mode():
            for tok in batches:
                shadow(input_ids=tok, use_cache=False)
        return time.perf_counter() - t

    @cpu_timed("naive")
    def naive():
        out = tmp / "naive"
        out.mkdir(exist_ok=True)
        t = time.perf_counter()
        with torch.inference_mode():
            for i, tok in enumerate(batches):
                _, cache = model.run_with_cache(tok, names_filter=hooks)
                torch.save({h: cache[h].reshape(-1, cache[h].shape[-1]).half() for h in hooks}, out / f"{i}.pt")
        return time.perf_counter() - t

    def run_store(key, hook_list):
        @cpu_timed(key + "_total")
        def go():
            out = tmp / key
            shutil.rmtree(out, ignore_errors=True)
            cfg = CacheConfig(model=args.model, hooks=hook_list, corpus="default", n_tokens=n_tok, context_length=C,
                              batch_size=B, dtype="float16", out=str(out))
            t = time.perf_counter()
            store = cache_activations(cfg, model=model, progress=False)
            total = time.perf_counter() - t
            return store.manifest["last_run"]["seconds"], total
        return go

    ours = run_store("interp", hooks)

    # SAELens caches one hook per run: compare it with interp on that same hook
    hook = hooks[-1]
    sae_python = Path(args.saelens_python)
    sae_payload, sae_err = None, None
    if sae_python.exists():
        from interp.models.gguf import dequantised_dir

        m_layer = re.match(r"blocks\.(\d+)\.hook_resid_post$", hook)
        if m_layer and args.model == "smollm2-135m":
            sae_payload = {"weights": str(dequantised_dir(args.model)), "d": model.cfg.d_model,
                           "hook": f"model.layers.{m_layer.group(1)}",  # HookedProxyLM names hooks by HF module
                           "n_tokens": n_tok, "ctx": C, "batch": B, "tokens": seqs, "threads": args.threads}
        else:
            sae_err = f"the SAELens comparison maps only blocks.L.hook_resid_post of smollm2-135m, not {hook}"
    else:
        sae_err = f"no SAELens venv at {sae_python}"

    def saelens():
        r = subprocess.run([str(sae_python), "-c", SAELENS_SCRIPT, json.dumps(sae_payload)],
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError("SAELens failed: " + " | ".join(r.stderr.strip().splitlines()[-5:]))
        got = json.loads(r.stdout.strip().splitlines()[-1])
        return got

    ours_single = run_store("interp_1hook", [hook])

    results = {"plain_bridge": [], "plain_hf": [], "naive": [], "interp_loop": [], "interp_total": []}
    if sae_payload:
        results.update({"saelens": [], "interp_1hook_loop": [], "interp_1hook_total": []})
    sae_info: dict = {}
    ours()  # warm-up (weight hash, tokenizer, allocator)
    cpu.clear()
    for rep in range(args.repeats):  # interleaved, so load changes hit every contender alike
        print(f"repeat {rep + 1}/{args.repeats} (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
        results["plain_bridge"].append(plain_bridge())
        results["plain_hf"].append(plain_hf())
        loop, total = ours()
        results["interp_loop"].append(loop)
        results["interp_total"].append(total)
        results["naive"].append(naive())
        if sae_payload:
            try:
                got = saelens()
            except RuntimeError as e:
                sae_err, sae_payload = str(e), None
                for k in ("saelens", "interp_1hook_loop", "interp_1hook_total"):
                    results.pop(k, None)
                continue
            sae_info = {k: got[k] for k in ("sae_lens", "tokens_cached", "load_seconds")}
            results["saelens"].append(got["seconds"] * n_tok / got["tokens_cached"])
            cpu.setdefault("saelens", []).append(got["cpu_seconds"] * n_tok / got["tokens_cached"])
            loop, total = ours_single()
            results["interp_1hook_loop"].append(loop)
            results["interp_1hook_total"].append(total)
    best = {k: min(v) for k, v in results.items()}
    tps = {k: n_tok / v for k, v in best.items()}
    best_cpu = {k: min(v) for k, v in cpu.items()}
    plain_key = min(("plain_bridge", "plain_hf"), key=best.__getitem__)  # the faster plain pass is the ceiling
    if "saelens" in best:
        sae = {"status": "ok", "hook": hook, **sae_info,
               "ratio_interp_vs_saelens_total": best["saelens"] / best["interp_1hook_total"],
               "ratio_interp_vs_saelens_loop": best["saelens"] / best["interp_1hook_loop"],
               "cpu_ratio_interp_vs_saelens": best_cpu["saelens"] / best_cpu["interp_1hook_total"],
               "note": "SAELens AutoModelForCausalLM/HookedProxyLM path (raw HF model, stops after the hooked "
                       "layer), time of runner.run() (model load excluded); ratio > 1: interp faster"}
    else:
        sae = {"status": "not run", "reason": sae_err}

    report = {
        "command": [sys.executable, *sys.argv], "machine": machine(), "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
        "model": args.model, "hooks": len(hooks), "hook_patterns": args.hooks, "tokens": n_tok,
        "context_length": C, "batch_size": B, "repeats": args.repeats, "threads": args.threads,
        "seconds_best": best, "tok_per_s": tps,
        "plain_baseline": plain_key,
        "ratio_plain_hf_vs_plain_bridge": best["plain_bridge"] / best["plain_hf"],
        "ratio_interp_loop_vs_plain": best[plain_key] / best["interp_loop"],
        "ratio_interp_total_vs_plain": best[plain_key] / best["interp_total"],
        "ratio_interp_total_vs_plain_bridge": best["plain_bridge"] / best["interp_total"],
        "ratio_interp_total_vs_plain_hf": best["plain_hf"] / best["interp_total"],
        "speedup_interp_vs_naive": best["naive"] / best["interp_total"],
        "saelens": sae, "all_seconds": results, "cpu_seconds_best": best_cpu, "all_cpu_seconds": cpu,
        "cpu_ratio_interp_total_vs_plain": best_cpu[plain_key] / best_cpu["interp_total"],
        "cpu_ratio_interp_total_vs_plain_bridge": best_cpu["plain_bridge"] / best_cpu["interp_total"],
        "cpu_ratio_interp_total_vs_plain_hf": best_cpu["plain_hf"] / best_cpu["interp_total"],
        "cpu_speedup_interp_vs_naive": best_cpu["naive"] / best_cpu["interp_total"],
    }
    if "saelens" in best_cpu:
        report["cpu_ratio_interp_vs_saelens"] = best_cpu["saelens"] / best_cpu["interp_1hook_total"]
    shutil.rmtree(tmp, ignore_errors=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1, default=str) + "\n")
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        m = report["machine"]
        print(f"machine: {m['cpu']} ({m['cores']} cores, load {m['load_avg'][0]:.1f}), torch {m['torch']} "
              f"({m['torch_threads']} threads), transformer-lens {m['transformer-lens']}, transformers {m['transformers']}")
        print(f"{args.model}, {len(hooks)} hooks ({args.hooks}), {n_tok} tokens, ctx {C}, batch {B}, best of {args.repeats}")
        print(f"  {'':<18} {'wall':>9} {'wall tok/s':>11} {'CPU':>9} {'CPU tok/s':>10}")
        for k in results:
            c = f"{best_cpu[k]:8.2f}s {n_tok / best_cpu[k]:10.0f}" if k in best_cpu else ""
            print(f"  {k:<18} {best[k]:8.2f}s {tps[k]:11.0f} {c}")
        print(f"  plain HF forward is {report['ratio_plain_hf_vs_plain_bridge']:.2f}x "
              f"the bridge's")
        print(f"  interp throughput / plain (target >= 0.85), baseline {plain_key}: loop "
              f"{report['ratio_interp_loop_vs_plain']:.2f}, end-to-end {report['ratio_interp_total_vs_plain']:.2f} "
              f"(vs plain_bridge {report['ratio_interp_total_vs_plain_bridge']:.2f}, "
              f"vs plain_hf {report['ratio_interp_total_vs_plain_hf']:.2f})")
        print(f"  interp vs naive run_with_cache+torch.save: {report['speedup_interp_vs_naive']:.2f}x")
        if sae["status"] == "ok":
            print(f"  interp vs SAELens {sae['sae_lens']} on {hook}: {sae['ratio_interp_vs_saelens_total']:.2f}x "
                  f"(end-to-end), {sae['ratio_interp_vs_saelens_loop']:.2f}x (loop), "
                  f"{sae['cpu_ratio_interp_vs_saelens']:.2f}x (CPU time)")
        else:
            print(f"  SAELens: not run ({sae['reason']})")
        print(f"  by process CPU time: interp/plain end-to-end {report['cpu_ratio_interp_total_vs_plain']:.2f}, "
              f"interp vs naive {report['cpu_speedup_interp_vs_naive']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
