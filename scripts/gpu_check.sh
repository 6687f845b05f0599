#!/usr/bin/env bash
# The GPU check of issue 14 (item 8): on a machine with CUDA, install interp onto the torch that is there
# (from the wheels scripts/fetch_wheels.sh put in wheels/, no network), run the tests marked `gpu`
# (tests/test_gpu.py) and three GPU bench ratios with small sizes, in under 8 minutes:
#   IG vs captum at hook_embed (bench_ig.py --gpt2-random: a random GPT-2-small-shaped model, no hub),
#   SAE training vs the plain PyTorch loop (bench_sae_train.py, synthetic rows),
#   the store's batches on the GPU vs a raw host read (bench_store_read.py --device cuda).
# Results go to $OUT (the device tool's output folder) or GPU_CHECK_OUT, else bench/results/gpu_check/:
# gpu_check.log, gpu_tests.xml, gpu_check.json (the ratios, machine and versions) and the bench JSONs.
# Where CUDA is unavailable it says so, runs the gpu tests once to show that they skip, and exits 0
# (GPU_CHECK_REQUIRE_CUDA=1: exit 3 instead).  GPU_CHECK_INSTALL=0 skips the install step.
#   device tool:  bash scripts/fetch_wheels.sh   (here, once)   then
#                 run(command="bash scripts/gpu_check.sh", carry=["wheels"], timeout_s=600)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's interp, installed or not
PY=${PYTHON:-python3}
OUTDIR=${GPU_CHECK_OUT:-${OUT:-bench/results/gpu_check}}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu_check.log"
exec > >(tee "$LOG") 2>&1
t_start=$(date +%s)
step() { echo "== [$(( $(date +%s) - t_start )) s] $*"; }

step "machine"
date -u +"%Y-%m-%dT%H:%M:%SZ"
command -v nvidia-smi >/dev/null && nvidia-smi -L || echo "no nvidia-smi"
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "gpu_check: $PY has no torch; nothing to check (a GPU machine's python3 holds its CUDA torch)"
  [ "${GPU_CHECK_REQUIRE_CUDA:-0}" = 1 ] && exit 3 || exit 0
fi
TORCH=$("$PY" -c "import torch; print(torch.__version__)")
CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))")
echo "python $("$PY" -c 'import sys; print(sys.version.split()[0])') at $(command -v "$PY"); torch $TORCH; cuda available: $CUDA"

if [ "$CUDA" != 1 ]; then
  echo "gpu_check: CUDA IS NOT AVAILABLE on this machine (torch $TORCH): no GPU test or GPU bench can run here."
  echo "gpu_check: the gpu tests skip; shown once:"
  "$PY" -m pytest tests/test_gpu.py -q -rs -p no:cacheprovider 2>&1 | tail -4
  [ "${GPU_CHECK_REQUIRE_CUDA:-0}" = 1 ] && exit 3 || exit 0
fi

if [ "${GPU_CHECK_INSTALL:-1}" = 1 ]; then
  step "install interp onto torch $TORCH (no network: --no-index, wheels/)"
  keep=$(mktemp)
  echo "torch==$TORCH" > "$keep"  # the machine's torch stays what it is
  if ! "$PY" -m pip install -q --no-index --find-links wheels --no-build-isolation -c "$keep" -e .; then
    echo "gpu_check: the resolving install failed (a dependency the image lacks is not in wheels/, or a version"
    echo "           conflict; see above); installing the carried wheels without dependency resolution instead"
    "$PY" -m pip install -q --no-index --no-deps wheels/*.whl \
      && "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
  fi
  AFTER=$("$PY" -c "import torch; print(torch.__version__)")
  [ "$AFTER" = "$TORCH" ] || { echo "gpu_check: torch changed from $TORCH to $AFTER: stop"; exit 1; }
fi
"$PY" - <<'PYEOF'
import importlib.metadata as md, interp, torch
print("interp from", interp.__file__)
print("versions:", {p: md.version(p) for p in ("torch", "transformers", "transformer-lens", "numpy", "captum", "safetensors")})
print("device:", torch.cuda.get_device_name(0))
PYEOF

rc=0
step "tests marked gpu (tests/test_gpu.py)"
timeout 180 "$PY" -m pytest tests/test_gpu.py -m gpu -v -rs -p no:cacheprovider --junitxml="$OUTDIR/gpu_tests.xml" || rc=1

step "bench: IG vs captum at hook_embed (random GPT-2 small, cuda)"
timeout 100 "$PY" bench/bench_ig.py --gpt2-random --device cuda --n 4 --steps 32 --repeat 3 \
  --out "$OUTDIR/bench_ig_gpu.json" || rc=1
step "bench: SAE training, interp vs the plain PyTorch loop (cuda)"
timeout 90 "$PY" bench/bench_sae_train.py --device cuda --rows 32768 --held 4096 --batch 4096 --steps 50 \
  --threads 8 --repeats 2 --saelens-python /nonexistent --out "$OUTDIR/bench_sae_train_gpu.json" || rc=1
step "bench: store batches to the GPU vs raw host read"
timeout 90 "$PY" bench/bench_store_read.py --device cuda --rows 200000 --repeats 3 --cold-repeats 1 \
  --out "$OUTDIR/bench_store_read_gpu.json" || rc=1

step "summary"
"$PY" - "$OUTDIR" "$rc" <<'PYEOF'
import json, os, sys, platform
from pathlib import Path
import torch
out, rc = Path(sys.argv[1]), int(sys.argv[2])
def load(name):
    p = out / name
    return json.loads(p.read_text()) if p.exists() else {}
ig = load("bench_ig_gpu.json").get("gpt2_random", {})
sae = load("bench_sae_train_gpu.json").get("results", {})
sr = load("bench_store_read_gpu.json").get("shuffled_fp16_vs_raw", {})
tok = lambda k: sae.get(k, {}).get("tokens_per_s")
ratios = {
    "ig_captum_over_ours_hook_embed": ig.get("hook_embed", {}).get("captum_over_ours"),
    "ig_max_abs_diff_vs_captum": ig.get("hook_embed", {}).get("max_abs_diff_vs_captum"),
    "sae_interp_over_plain_pytorch": (tok("interp") / tok("plain-pytorch")) if tok("interp") and tok("plain-pytorch") else None,
    "store_to_gpu_fp16_over_raw_host_read": {k: v.get("shuffled_fp16_to_device_paired_median") for k, v in sr.items()
                                             if isinstance(v, dict) and "shuffled_fp16_to_device_paired_median" in v},
    "raw_read_to_gpu_over_raw_host_read": {k: v.get("raw_batches_to_device_paired_median") for k, v in sr.items()
                                           if isinstance(v, dict) and "raw_batches_to_device_paired_median" in v},
}
summary = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "python": platform.python_version(),
           "cpus": os.cpu_count(), "all_passed": rc == 0, "ratios": ratios}
(out / "gpu_check.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
PYEOF
step "done (rc=$rc)"
exit $rc
