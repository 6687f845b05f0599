#!/usr/bin/env bash
# Build a separate venv with SAELens (sae-lens from PyPI) for bench/bench_cache.py's comparison.
#
# SAELens pins transformer-lens < 4 and transformers 4.x, which clash with interp's .venv, so it
# gets its own venv (default /work/venv-saelens, override with $SAELENS_VENV).  torch is NOT
# installed again: asking pip for torch downloads a multi-GB CUDA build.  Instead the venv sees
# exactly the torch of ./.venv (2.13.0 CPU here) through a folder of symlinks (torch, its
# dist-info, functorch, torchgen) named by a .pth file, and pip runs with a constraint pinning
# torch to that version, so it treats torch as installed and fails rather than fetch another.
# Idempotent: re-running keeps what is there.
#
#   bash scripts/install_saelens.sh            # then: python bench/bench_cache.py
set -euo pipefail
cd "$(dirname "$0")/.."
MAIN_SP=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
TORCH_VER=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('torch').split('+')[0])")
VENV=${SAELENS_VENV:-/work/venv-saelens}
PY=$(.venv/bin/python -c "import sys; print(sys._base_executable)")
SAELENS_VERSION=${SAELENS_VERSION:-}   # e.g. 6.5.1; empty: the newest that resolves with this torch

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
SP=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
LINKS="$VENV/shared-torch"
mkdir -p "$LINKS"
for p in torch functorch torchgen "$(cd "$MAIN_SP" && ls -d torch-"$TORCH_VER"*.dist-info | head -1)"; do
  [ -e "$MAIN_SP/$p" ] && ln -sfn "$MAIN_SP/$p" "$LINKS/$p"
done
echo "$LINKS" > "$SP/shared_torch_from_interp.pth"
echo "torch==$TORCH_VER" > "$VENV/constraints.txt"

"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$VENV/constraints.txt" \
  "sae-lens${SAELENS_VERSION:+==$SAELENS_VERSION}" 2>&1 | { grep -v "^WARNING: Location" || true; }
MAIN_SP="$MAIN_SP" "$VENV/bin/python" - <<'EOF'
import os, torch, sae_lens, transformer_lens, transformers
real = os.path.realpath(torch.__file__)
assert real.startswith(os.path.realpath(os.environ["MAIN_SP"])), f"torch came from {real}, not interp's .venv"
print(f"sae-lens {sae_lens.__version__} | torch {torch.__version__} ({torch.__file__}) | "
      f"transformer-lens {getattr(transformer_lens, '__version__', '?')} | transformers {transformers.__version__}")
EOF
