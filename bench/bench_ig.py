"""Benchmark: our batched IG vs captum's LayerIntegratedGradients (same steps, method, baseline).

Targets (issue 3): agreement to numerical tolerance, >= 3x faster than captum, and completeness
delta <= 2% of F(x) - F(baseline) at our default step count.  On IOI prompts with the corrupted
(ABC) prompt as the baseline, in one run, interleaved, best of ``--repeat``:

1. ``hook_embed``: ours (default fast path; on Gemma 3 the lean forward of interp/models/lean.py) vs
   captum at the ``hook_embed`` HookPoint (whole expanded batch at once, internal_batch_size=None,
   its fastest setting).
2. A mid-layer hook (``--mid-hook blocks.L.hook_resid_pre``): ours vs captum attached to block L's
   input (``attribute_to_layer_input=True``, captum_ig.py), and ours vs our plain reference
   path (``fast=False``).
3. Equal accuracy: the fewest Gauss-Legendre steps whose completeness delta is within captum's at
   ``--steps``, timed: a separate number, not the equal-steps speed-up.
4. Our default step count: completeness delta per prompt.
5. The compute floor (``floor`` in the same interleaved rounds): the same ``n*steps`` interpolated
   embeddings through the plain Hugging Face model (a weight-sharing copy without the bridge,
   interp.models.lean.hf_model, SDPA attention, ``logits_to_keep=1``) and one ``torch.autograd.grad`` of
   the weighted metric w.r.t. ``inputs_embeds``: the least work any IG at the embeddings with that
   many steps does unless it skips arithmetic.  Achieved GFLOP/s of each contender (matmul FLOPs
   of the full job: 2 * non-embedding params * tokens forward, the same again for the
   activation-only backward, attention QK^T/AV forward and twice that backward, the last-position
   unembedding) against a measured fp32 GEMM peak (torch.mm 2048^3 each round, and one of the
   job's own shapes, same threads), and the ceiling: the lean forward's work at that peak, i.e.
   the most any equal-step IG at the embeddings could gain on captum without skipping arithmetic.
   Each contender's process CPU time is recorded beside its wall time (robust to other processes
   holding the cores; ratios of both are printed).

    python bench/bench_ig.py [--model smollm2-135m] [--n 4] [--steps 32] [--mid-hook blocks.20.hook_resid_pre]
    python bench/bench_ig.py --gpt2-random [--n 4] [--steps 32] [--device cuda]   # adds "gpt2_random" to the same JSON
    python bench/bench_ig.py --lean-vs-replay [--n 2] [--steps 16]   # adds "lean_vs_replay"

``--lean-vs-replay``: whether the lean forward pays, with everything else equal.  IG at
``hook_embed`` and at a mid-layer ``blocks.L.hook_resid_pre`` (``L = n_layers // 2``) on the
default fast path twice: with the lean forward (``path == "lean"``) and with it switched off
(``path == "replay"``: the same prefix replay, last-position logits, batching and steps through the
bridge), on Gemma 3 270M as bundled.  (The same section measured lean Llama, GPT-2 and GPT-NeoX
forwards on SmolLM2-135M and random GPT-2-small-shaped models before they were removed for
gaining under 1.5x: bench/results/bench_ig_issue14.json.)  ``n`` random prompts of 16 tokens whose baseline
differs at positions 2, 5 and 11, a last-position logit difference; interleaved rounds, best of
``--repeat`` and the per-round ratio spread; writes the ``lean_vs_replay`` section.

``--gpt2-random``: the lean GPT-2 forward at real size without hub access: a random-initialised
``GPT2Config()`` (124M: 12 layers, d_model 768, vocab 50,257) under a bridge, ``n`` random prompts
of 16 tokens whose corrupted copy differs at positions 2, 5 and 11, a last-position logit
difference; ours (lean) vs our plain path vs captum at ``hook_embed`` vs the floor, and ours vs
plain at ``blocks.6.hook_resid_pre`` (captum cannot attach to a GPT-2 block input, captum_ig.py),
interleaved, best of ``--repeat``.

Writes bench/results/bench_ig.json with the machine, versions, load average and command line.
"""

import argparse
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

print = functools.partial(print, flush=True)  # progress shows under a pipe


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # CUDA kernels run asynchronously: time to their end


def _time(fn):
    _sync()
    t0 = time.perf_counter()
    out = fn()
    _sync()
    return out, time.perf_counter() - t0


def _load():
    return open("/proc/loadavg").read().split()[:3]


def _round(runs: dict, out: dict, best: dict, label: str, r: int, **extra) -> dict:
    """One interleaved round: every contender once; wall and process-CPU seconds into the returned row,
    results into ``out``, the best wall time into ``best``; prints the row."""
    row, cpu = {"loadavg": _load(), **extra}, {}
    for name, fn in runs.items():
        c0 = time.process_time()
        out[name], t = _time(fn)
        row[name], cpu[name] = t, time.process_time() - c0
        best[name] = min(best.get(name, float("inf")), t)
    row["cpu_s"] = cpu
    gemm = f", GEMM {extra['gemm_peak_gflops']:.0f} GFLOP/s" if "gemm_peak_gflops" in extra else ""
    print(f"{label} {r}: " + ", ".join(f"{k} {v:.2f} s" for k, v in row.items() if k.startswith(("embed", "mid")))
          + "  (process CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()) + ")"
          + f"  (load {row['loadavg']}{gemm})")
    return row


def gemm_peak(n: int = 2048, shapes=((2048, 576, 1536),), repeat: int = 5) -> dict:
    """Best-of-``repeat`` fp32 torch.mm GFLOP/s: a square ``n^3`` product and the given (m, k, n) shapes."""
    out = {}
    for m, k, nn in ((n, n, n),) + tuple(shapes):
        a, b = torch.randn(m, k), torch.randn(k, nn)
        torch.mm(a, b)
        best = min(_time(lambda: torch.mm(a, b))[1] for _ in range(repeat))
        out[f"{m}x{k}x{nn}"] = 2 * m * k * nn / best / 1e9
    return out


def job_flops(shadow, n_seq: int, T: int) -> dict:
    """Matmul FLOPs of IG at the embeddings: ``n_seq`` sequences of ``T`` tokens through the Hugging
    Face model ``shadow``, forward + activation backward (no weight gradients), last-position
    unembedding; attention counted over the full ``T x T`` scores (QK^T and AV)."""
    cfg = shadow.config
    skip = {id(shadow.get_input_embeddings().weight), id(shadow.get_output_embeddings().weight)}
    dense_params = sum(p.numel() for n, p in shadow.named_parameters()
                       if p.ndim == 2 and id(p) not in skip and "wpe" not in n)
    H = cfg.num_attention_heads
    dh = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    dense = n_seq * T * 2 * dense_params
    attn = n_seq * cfg.num_hidden_layers * 2 * 2 * T * T * H * dh
    unembed = n_seq * 2 * cfg.hidden_size * cfg.vocab_size
    fwd = dense + attn + unembed
    bwd = dense + 2 * attn + unembed
    return {"dense_params": dense_params, "forward": fwd, "backward": bwd, "total": fwd + bwd}


def floor_fn(shadow, clean, corrupt, metric, steps):
    """IG at the embeddings by the plain HF model: forward of the ``steps * B`` interpolated
    embeddings (``logits_to_keep=1``) and one input gradient; returns the attributions."""
    from interp.attribution.ig import quadrature

    alphas, weights = quadrature(steps, "gausslegendre")
    emb = shadow.get_input_embeddings()

    def floor():
        with torch.no_grad():
            x, b = emb(clean), emb(corrupt)
        a = alphas.to(x).view(-1, 1, 1, 1)
        pts = (b + a * (x - b)).reshape(-1, *x.shape[1:]).requires_grad_(True)
        with torch.enable_grad():
            f = metric(shadow(inputs_embeds=pts, use_cache=False, logits_to_keep=1).logits)
            (g,) = torch.autograd.grad((f.reshape(steps, -1) * weights.to(f)[:, None]).sum(), pts)
        return (x - b) * g.reshape(steps, *x.shape).sum(0)

    return floor


def gpt2_random(args) -> dict:
    """The ``--gpt2-random`` section (see the module doc)."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel

    from interp.attribution.captum_ig import captum_layer_ig
    from interp.attribution.ig import layer_integrated_gradients
    from interp.models.lean import hf_model
    from interp.models.tiny import char_tokenizer

    torch.manual_seed(0)
    cfg = GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    hf = GPT2LMHeadModel(cfg).eval().to(args.device)
    model = TransformerBridge.boot_transformers("gpt2", hf_model=hf, tokenizer=char_tokenizer())
    model.eval().to(args.device)
    for p in model.parameters():
        p.requires_grad_(False)
    T, n = 16, args.n
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, cfg.vocab_size, (n, T), generator=g)
    corrupt = clean.clone()
    corrupt[:, [2, 5, 11]] = torch.randint(0, cfg.vocab_size, (n, 3), generator=g)
    clean, corrupt = clean.to(args.device), corrupt.to(args.device)
    a_tok, b_tok = 464, 262

    def metric(logits):
        return logits[:, -1, a_tok] - logits[:, -1, b_tok]

    mid = "blocks.6.hook_resid_pre"
    kw = dict(baseline=corrupt, steps=args.steps, method="gausslegendre", max_tokens=1 << 20)
    floor = floor_fn(hf_model(model, attn_implementation="sdpa"), clean, corrupt, metric, args.steps)
    runs = {
        "embed_floor": floor,
        "embed_ours": lambda: layer_integrated_gradients(model, clean, metric, hook="hook_embed", **kw),
        "embed_plain": lambda: layer_integrated_gradients(model, clean, metric, hook="hook_embed", fast=False, **kw),
        "embed_captum": lambda: captum_layer_ig(model, clean, metric, hook="hook_embed", baseline_tokens=corrupt,
                                                steps=args.steps),
        "mid_ours": lambda: layer_integrated_gradients(model, clean, metric, hook=mid, **kw),
        "mid_plain": lambda: layer_integrated_gradients(model, clean, metric, hook=mid, fast=False, **kw),
    }
    floor()
    layer_integrated_gradients(model, clean[:1], metric, hook="hook_embed", baseline=corrupt[:1], steps=2)
    captum_layer_ig(model, clean[:1], metric, hook="hook_embed", baseline_tokens=corrupt[:1], steps=2)
    best, out, rounds = {}, {}, []
    for r in range(args.repeat):
        row = _round(runs, out, best, "gpt2 round", r)
        rounds.append(row)
        print(f"   ratios this round: embed plain/ours {row['embed_plain'] / row['embed_ours']:.2f}x, "
              f"captum/ours {row['embed_captum'] / row['embed_ours']:.2f}x, captum/floor "
              f"{row['embed_captum'] / row['embed_floor']:.2f}, ours/floor {row['embed_ours'] / row['embed_floor']:.2f}; "
              f"mid plain/ours {row['mid_plain'] / row['mid_ours']:.2f}x")
    ref = out["embed_captum"].attributions
    res = {
        "config": "GPT2Config() random init (seed 0): 12 layers, d_model 768, 12 heads, vocab 50257",
        "n": n, "tokens": T, "steps": args.steps, "corrupt_positions": [2, 5, 11], "repeat": args.repeat,
        "device": str(next(model.parameters()).device),
        "threads": torch.get_num_threads(), "rounds": rounds, "best_s": best, "best_cpu_s": cpu_best(rounds),
        "paths": {k: out[k].path for k in ("embed_ours", "embed_plain", "mid_ours", "mid_plain")},
        "hook_embed": {"plain_over_ours": best["embed_plain"] / best["embed_ours"],
                       "captum_over_ours": best["embed_captum"] / best["embed_ours"],
                       "captum_over_floor": best["embed_captum"] / best["embed_floor"],
                       "ours_over_floor": best["embed_ours"] / best["embed_floor"],
                       "per_round_captum_over_ours": [r["embed_captum"] / r["embed_ours"] for r in rounds],
                       "per_round_plain_over_ours": [r["embed_plain"] / r["embed_ours"] for r in rounds],
                       "max_abs_diff_vs_captum": (out["embed_ours"].attributions - ref).abs().max().item(),
                       "max_abs_diff_plain_vs_captum": (out["embed_plain"].attributions - ref).abs().max().item(),
                       "max_abs_diff_floor_vs_captum": (out["embed_floor"] - ref).abs().max().item(),
                       "max_abs_attr": ref.abs().max().item()},
        mid: {"plain_over_ours": best["mid_plain"] / best["mid_ours"],
              "per_round_plain_over_ours": [r["mid_plain"] / r["mid_ours"] for r in rounds],
              "max_abs_diff_vs_plain": (out["mid_ours"].attributions - out["mid_plain"].attributions).abs().max().item(),
              "max_abs_attr": out["mid_plain"].attributions.abs().max().item()},
    }
    cb = res["best_cpu_s"]
    res["cpu_ratios"] = cpu_ratios(cb, {"embed_plain_over_ours": ("embed_plain", "embed_ours"),
                                        "embed_captum_over_ours": ("embed_captum", "embed_ours"),
                                        "embed_ours_over_floor": ("embed_ours", "embed_floor"),
                                        "embed_captum_over_floor": ("embed_captum", "embed_floor"),
                                        "mid_plain_over_ours": ("mid_plain", "mid_ours")}, "gpt2 ")
    e = res["hook_embed"]
    print(f"gpt2 hook_embed: ours {best['embed_ours']:.2f} s ({res['paths']['embed_ours']}), plain "
          f"{best['embed_plain']:.2f} s, captum {best['embed_captum']:.2f} s, floor {best['embed_floor']:.2f} s -> "
          f"plain/ours {e['plain_over_ours']:.2f}x, captum/ours {e['captum_over_ours']:.2f}x; max|diff| vs captum "
          f"{e['max_abs_diff_vs_captum']:.2e} of {e['max_abs_attr']:.2e}")
    print(f"gpt2 {mid}: ours {best['mid_ours']:.2f} s ({res['paths']['mid_ours']}), plain {best['mid_plain']:.2f} s "
          f"-> {res[mid]['plain_over_ours']:.2f}x; max|diff| {res[mid]['max_abs_diff_vs_plain']:.2e}")
    return res


def _lean_models():
    """``(label, bridge)`` for each architecture with a lean forward (see ``--lean-vs-replay``)."""
    from interp.models import load_model

    yield "gemma3_text (gemma3-270m)", load_model("gemma3-270m", device="cpu")


def lean_vs_replay(args) -> dict:
    """The ``--lean-vs-replay`` section (see the module doc)."""
    import interp.attribution.ig as ig_mod

    real_lean = ig_mod.lean_forward

    def ig(model, clean, corrupt, metric, hook, lean: bool):
        ig_mod.lean_forward = real_lean if lean else (lambda m, h: (None, "bench: lean forward off"))
        try:
            r = ig_mod.layer_integrated_gradients(model, clean, metric, hook=hook, baseline=corrupt,
                                                  steps=args.steps, max_tokens=1 << 20)
        finally:
            ig_mod.lean_forward = real_lean
        want = "lean" if lean else "replay"
        if r.path != want:
            raise RuntimeError(f"expected the {want} path, got {r.path} ({r.lean_skipped})")
        return r

    res = {}
    for label, model in _lean_models():
        V, T, n = model.cfg.d_vocab, 16, args.n
        g = torch.Generator().manual_seed(1)
        clean = torch.randint(1, V, (n, T), generator=g)
        corrupt = clean.clone()
        corrupt[:, [2, 5, 11]] = torch.randint(1, V, (n, 3), generator=g)
        a_tok, b_tok = 3, 5

        def metric(logits, a_tok=a_tok, b_tok=b_tok):
            return logits[:, -1, a_tok] - logits[:, -1, b_tok]

        mid = f"blocks.{model.cfg.n_layers // 2}.hook_resid_pre"
        runs = {f"{w}_{p}": (lambda h=h, lean=(p == "lean"), model=model: ig(model, clean, corrupt, metric, h, lean))
                for w, h in (("embed", "hook_embed"), ("mid", mid)) for p in ("lean", "replay")}
        for fn in runs.values():  # warm-up
            fn()
        best, out, rounds = {}, {}, []
        for r in range(args.repeat):
            row = _round(runs, out, best, f"{label} round", r)
            rounds.append(row)
        sec = {"hooks": ["hook_embed", mid], "n": n, "tokens": T, "steps": args.steps, "rounds": rounds,
               "best_s": best, "best_cpu_s": cpu_best(rounds)}
        for w in ("embed", "mid"):
            per = [r[f"{w}_replay"] / r[f"{w}_lean"] for r in rounds]
            cpu = [r["cpu_s"][f"{w}_replay"] / r["cpu_s"][f"{w}_lean"] for r in rounds]
            sec[w] = {"replay_over_lean_best": best[f"{w}_replay"] / best[f"{w}_lean"],
                      "per_round": per, "per_round_cpu": cpu,
                      "cpu_best_ratio": sec["best_cpu_s"][f"{w}_replay"] / sec["best_cpu_s"][f"{w}_lean"],
                      "max_abs_diff": (out[f"{w}_lean"].attributions - out[f"{w}_replay"].attributions).abs().max().item(),
                      "max_abs_attr": out[f"{w}_replay"].attributions.abs().max().item()}
            print(f"{label} {w}: replay/lean best {sec[w]['replay_over_lean_best']:.2f}x, per round "
                  f"{', '.join(f'{x:.2f}' for x in per)}; CPU best {sec[w]['cpu_best_ratio']:.2f}x; "
                  f"max|diff| {sec[w]['max_abs_diff']:.1e} of {sec[w]['max_abs_attr']:.1e}")
        res[label] = sec
        del model
    return res


def cpu_best(rounds: list) -> dict:
    """Best process CPU seconds per contender over the rounds (less sensitive than wall time to
    other processes on the cores: time waiting for a core is not counted)."""
    names = rounds[0]["cpu_s"]
    return {k: min(r["cpu_s"][k] for r in rounds) for k in names}


def cpu_ratios(cb: dict, pairs: dict, label: str = "") -> dict:
    """``{name: cb[a] / cb[b]}`` for ``pairs = {name: (a, b)}`` of best CPU seconds; printed on one line."""
    out = {k: cb[a] / cb[b] for k, (a, b) in pairs.items()}
    print(f"{label}process-CPU ratios (best of rounds): " + ", ".join(f"{k} {v:.2f}" for k, v in out.items()))
    return out


def ceiling(fl: dict, L: int, T: int, p0: int, rounds: list) -> dict:
    """What the arithmetic allows: the lean forward's work (positions ``p0 ..`` in blocks ``0 .. L-2``,
    the last position in the last block; its keys/values there and the self-check pass not counted,
    so this is a lower bound) at the machine's GEMM peak (the best of the per-round measurements: a
    round's own can be taken while another process holds the cores), against captum's best time."""
    frac = ((L - 1) * (T - p0) + 1) / (L * T)
    work = fl["total"] * frac / 1e9
    peak = max(r["gemm_peak_gflops"] for r in rounds)
    captum = min(r["embed_captum"] for r in rounds)
    ours = min(r["embed_ours"] for r in rounds)
    return {"lean_work_fraction": frac, "lean_work_gflop": work, "gemm_peak_gflops": peak,
            "lean_work_at_peak_s": work / peak, "captum_best_s": captum,
            "max_speedup_vs_captum": captum / (work / peak),
            "ours_fraction_of_peak": work / ours / peak, "captum_fraction_of_peak": fl["total"] / 1e9 / captum / peak}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--mid-hook", default="blocks.20.hook_resid_pre")
    ap.add_argument("--repeat", type=int, default=2, help="timed rounds; the best of each is kept")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--skip-equal-accuracy", action="store_true")
    ap.add_argument("--gpt2-random", action="store_true", help="only the random GPT-2 (124M) section")
    ap.add_argument("--lean-vs-replay", action="store_true", help="only the lean-vs-replay section per architecture")
    ap.add_argument("--device", default="cpu", help="--gpt2-random: where the model runs (cuda on a GPU machine)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_ig.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out_path = Path(args.out)
    old = json.loads(out_path.read_text()) if out_path.exists() else {}
    if args.gpt2_random or args.lean_vs_replay:
        from interp.results import versions

        key = "gpt2_random" if args.gpt2_random else "lean_vs_replay"
        load0 = _load()
        sec = gpt2_random(args) if args.gpt2_random else {"models": lean_vs_replay(args), "loadavg_start": load0}
        sec.update(command=" ".join([Path(sys.executable).name] + sys.argv), versions=versions(),
                   platform=platform.platform(), loadavg_end=_load())
        old[key] = sec
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(old, indent=2))
        print("wrote", out_path)
        return

    from interp.attribution.captum_ig import captum_layer_ig
    from interp.attribution.ig import DEFAULT_STEPS, layer_integrated_gradients
    from interp.results import versions
    from interp.models import load_model
    from interp.tasks import ioi_task

    model = load_model(args.model, device="cpu" if not torch.cuda.is_available() else None)
    task = ioi_task(model, n=args.n)
    res = {"command": " ".join([Path(sys.executable).name] + sys.argv), "model": args.model, "n": task.n,
           "tokens": task.clean.shape[1], "steps": args.steps, "method": "gausslegendre", "repeat": args.repeat,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "torch_threads": torch.get_num_threads(), "loadavg_start": _load()},
           "versions": versions()}
    shared = int((task.clean == task.corrupt).all(0).int().cumprod(0).sum())
    res["shared_prefix_tokens"] = shared
    print(f"{res['machine']}  {res['versions']}")
    print(f"IOI {task.n} prompts x {task.clean.shape[1]} tokens ({shared} leading tokens shared by clean and "
          f"corrupt), {args.steps} steps gausslegendre")
    kw = dict(baseline=task.corrupt, steps=args.steps, method="gausslegendre", max_tokens=1 << 20)
    t1 = task.subset([0])
    for h in ("hook_embed", args.mid_hook):  # warm-up
        layer_integrated_gradients(model, task.clean[:1], t1.metric, hook=h, baseline=task.corrupt[:1], steps=2)
        captum_layer_ig(model, task.clean[:1], t1.metric, hook=h, baseline_tokens=task.corrupt[:1], steps=2)

    from interp.models.lean import hf_model

    shadow = hf_model(model, attn_implementation="sdpa")
    device = next(model.parameters()).device
    floor = floor_fn(shadow, task.clean.to(device), task.corrupt.to(device), task.metric, args.steps)
    floor()  # warm-up
    runs = {
        "embed_floor": floor,
        "embed_ours": lambda: layer_integrated_gradients(model, task.clean, task.metric, hook="hook_embed", **kw),
        "embed_captum": lambda: captum_layer_ig(model, task.clean, task.metric, hook="hook_embed",
                                                baseline_tokens=task.corrupt, steps=args.steps),
        "mid_ours": lambda: layer_integrated_gradients(model, task.clean, task.metric, hook=args.mid_hook, **kw),
        "mid_captum": lambda: captum_layer_ig(model, task.clean, task.metric, hook=args.mid_hook,
                                              baseline_tokens=task.corrupt, steps=args.steps),
        "mid_plain": lambda: layer_integrated_gradients(model, task.clean, task.metric, hook=args.mid_hook,
                                                        fast=False, **kw),
    }
    best, out, rounds = {}, {}, []
    for r in range(args.repeat):
        row = _round(runs, out, best, "round", r,
                     gemm_peak_gflops=max(gemm_peak(shapes=(), repeat=3).values()))
        rounds.append(row)
        print(f"   ratios this round: embed captum/floor {row['embed_captum'] / row['embed_floor']:.2f}, "
              f"ours/floor {row['embed_ours'] / row['embed_floor']:.2f}, "
              f"embed captum/ours {row['embed_captum'] / row['embed_ours']:.2f}x, "
              f"mid captum/ours {row['mid_captum'] / row['mid_ours']:.2f}x, "
              f"mid plain/ours {row['mid_plain'] / row['mid_ours']:.2f}x")
    res["rounds"] = rounds

    def compare(ours, ref):
        return {"max_abs_diff": (ours.attributions - ref.attributions).abs().max().item(),
                "max_abs_attr": ref.attributions.abs().max().item(), "ours_rel_delta": ours.relative_delta,
                "ref_rel_delta": ref.relative_delta, "ours_path": ours.path}

    e = {"ours_s": best["embed_ours"], "captum_s": best["embed_captum"],
         "speedup": best["embed_captum"] / best["embed_ours"],
         "speedup_per_round": [r["embed_captum"] / r["embed_ours"] for r in rounds],
         **compare(out["embed_ours"], out["embed_captum"])}
    res["hook_embed"] = e
    cb = cpu_best(rounds)
    e["best_cpu_s"] = cb
    e["cpu_ratios"] = cpu_ratios(cb, {"captum_over_ours": ("embed_captum", "embed_ours"),
                                      "captum_over_floor": ("embed_captum", "embed_floor"),
                                      "ours_over_floor": ("embed_ours", "embed_floor"),
                                      "mid_captum_over_ours": ("mid_captum", "mid_ours"),
                                      "mid_plain_over_ours": ("mid_plain", "mid_ours")})
    print(f"hook_embed: ours {e['ours_s']:.2f} s ({e['ours_path']}), captum {e['captum_s']:.2f} s -> "
          f"{e['speedup']:.2f}x (target >= 3x); max|diff| {e['max_abs_diff']:.2e} of max|attr| "
          f"{e['max_abs_attr']:.2e}; rel. delta ours {e['ours_rel_delta']:.4f} captum {e['ref_rel_delta']:.4f}")
    fl = job_flops(shadow, task.n * args.steps, task.clean.shape[1])
    peak = gemm_peak(shapes=((task.n * args.steps * task.clean.shape[1], model.cfg.d_model, model.cfg.d_mlp),))
    f_attr = out["embed_floor"]
    e["floor"] = {
        "floor_s": best["embed_floor"], "captum_over_floor": best["embed_captum"] / best["embed_floor"],
        "ours_over_floor": best["embed_ours"] / best["embed_floor"],
        "per_round": [{"captum_over_floor": r["embed_captum"] / r["embed_floor"],
                       "ours_over_floor": r["embed_ours"] / r["embed_floor"]} for r in rounds],
        "max_abs_diff_floor_vs_captum": (f_attr - out["embed_captum"].attributions).abs().max().item(),
        "job_gflop": fl["total"] / 1e9, "dense_params": fl["dense_params"],
        "gflops": {k: fl["total"] / 1e9 / best[f"embed_{k}"] for k in ("floor", "ours", "captum")},
        "gflops_over_round_peak": [{k: fl["total"] / 1e9 / r[f"embed_{k}"] / r["gemm_peak_gflops"]
                                    for k in ("floor", "ours", "captum")} for r in rounds],
        "gemm_peak_gflops": peak, "threads": torch.get_num_threads(),
        "max_speedup_vs_captum_at_floor": best["embed_captum"] / best["embed_floor"],
        "ceiling": ceiling(fl, model.cfg.n_layers, task.clean.shape[1], shared, rounds)}
    ef = e["floor"]
    print(f"floor (plain HF fwd+input grad, same {task.n * args.steps} sequences): {ef['floor_s']:.2f} s; "
          f"captum/floor {ef['captum_over_floor']:.2f}, ours/floor {ef['ours_over_floor']:.2f}; "
          f"floor vs captum max|diff| {ef['max_abs_diff_floor_vs_captum']:.2e}")
    print(f"job {ef['job_gflop']:.1f} GFLOP -> GFLOP/s floor {ef['gflops']['floor']:.1f}, ours "
          f"{ef['gflops']['ours']:.1f}, captum {ef['gflops']['captum']:.1f}; fp32 GEMM peak "
          + ", ".join(f"{k} {v:.1f}" for k, v in peak.items()) + f" GFLOP/s ({torch.get_num_threads()} threads)")
    c = ef["ceiling"]
    print(f"ceiling: the lean work ({c['lean_work_gflop']:.0f} GFLOP, {c['lean_work_fraction']:.0%} of the job) at the "
          f"GEMM peak ({c['gemm_peak_gflops']:.0f} GFLOP/s, best round) takes {c['lean_work_at_peak_s']:.2f} s -> at most "
          f"{c['max_speedup_vs_captum']:.2f}x captum ({c['captum_best_s']:.2f} s) at equal steps; ours runs at "
          f"{c['ours_fraction_of_peak']:.0%} of peak, captum at {c['captum_fraction_of_peak']:.0%}")
    m = {"hook": args.mid_hook, "ours_s": best["mid_ours"], "captum_s": best["mid_captum"],
         "plain_s": best["mid_plain"], "speedup_vs_captum": best["mid_captum"] / best["mid_ours"],
         "speedup_vs_plain": best["mid_plain"] / best["mid_ours"],
         "speedup_vs_captum_per_round": [r["mid_captum"] / r["mid_ours"] for r in rounds],
         **compare(out["mid_ours"], out["mid_captum"]),
         "max_abs_diff_vs_plain": (out["mid_ours"].attributions - out["mid_plain"].attributions).abs().max().item()}
    res["mid_hook"] = m
    print(f"{args.mid_hook}: ours {m['ours_s']:.2f} s ({m['ours_path']}), captum (block input) {m['captum_s']:.2f} s "
          f"-> {m['speedup_vs_captum']:.2f}x; our plain path {m['plain_s']:.2f} s -> {m['speedup_vs_plain']:.2f}x; "
          f"max|diff| vs captum {m['max_abs_diff']:.2e} of {m['max_abs_attr']:.2e}, vs plain "
          f"{m['max_abs_diff_vs_plain']:.2e}; rel. delta ours {m['ours_rel_delta']:.2e} captum {m['ref_rel_delta']:.2e}")

    if not args.skip_equal_accuracy:
        target = max(out["embed_captum"].relative_delta, 1e-4)
        for s in (2, 4, 6, 8, 12, 16, 24, args.steps):
            r, t = _time(lambda: layer_integrated_gradients(model, task.clean, task.metric, hook="hook_embed",
                                                            **{**kw, "steps": s}))
            if r.relative_delta <= target or s == args.steps:
                eq = {"steps": s, "seconds": t, "rel_delta": r.relative_delta, "captum_steps": args.steps,
                      "captum_s": best["embed_captum"], "captum_rel_delta": out["embed_captum"].relative_delta,
                      "speedup": best["embed_captum"] / t}
                break
        res["equal_accuracy_hook_embed"] = eq
        print(f"equal accuracy at hook_embed: ours {eq['steps']} steps {eq['seconds']:.2f} s (rel. delta "
              f"{eq['rel_delta']:.4f}) vs captum {args.steps} steps {eq['captum_s']:.2f} s "
              f"({eq['captum_rel_delta']:.4f}) -> {eq['speedup']:.2f}x")
    dflt, t_d = _time(lambda: layer_integrated_gradients(model, task.clean, task.metric, hook="hook_embed",
                                                         baseline=task.corrupt))
    res["default_steps"] = {"steps": DEFAULT_STEPS, "seconds": t_d, "rel_delta": dflt.relative_delta,
                            "per_prompt": (dflt.delta / (dflt.f_input - dflt.f_baseline)).abs().tolist()}
    print(f"default steps ({DEFAULT_STEPS}): {t_d:.2f} s, relative completeness delta {dflt.relative_delta:.4f} "
          f"(target <= 0.02)")
    res["machine"]["loadavg_end"] = _load()
    if "gpt2_random" in old:  # written by a --gpt2-random run: kept
        res["gpt2_random"] = old["gpt2_random"]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(res, indent=2))
    print("wrote", out_path)


if __name__ == "__main__":
    main()
