#!/usr/bin/env bash
# Download into wheels/ (gitignored) the packages that interp needs and a GPU machine's image lacks, for
# Python 3.12 on x86-64 Linux, at constraints.txt's versions, so that scripts/gpu_check.sh can install
# interp there with no network (`pip install --no-index --find-links wheels`), onto the torch the machine
# already has.  The list is interp's dependency closure less the image's packages (.library's KINDS.md
# package list of 2026-11-17: torch 2.11, transformers 5.17, numpy, scipy, scikit-learn, pytest, ...);
# tqdm is in the image too, but carried: datasets (carried) needs tqdm>=4.66.3, and an older image tqdm would
# make the resolving install fail.  GPU_WHEELS="name ..." replaces the list.  Carry the folder with the
# checkout (the device tool's `carry`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
DEFAULT="transformer-lens transformers-stream-generator typeguard beartype fancy-einsum datasets dill multiprocess
captum gguf plotly vaderSentiment wandb cwevals pydantic pydantic-core annotated-types typing-inspection platformdirs
opentelemetry-api opentelemetry-sdk opentelemetry-semantic-conventions opentelemetry-proto
opentelemetry-exporter-otlp-proto-http opentelemetry-exporter-otlp-proto-common opentelemetry-exporter-http-transport
opentelemetry-exporter-otlp-common googleapis-common-protos sniffio distro tzdata tqdm"
DEST=${WHEELS_DIR:-wheels}
mkdir -p "$DEST"
specs=()
for name in ${GPU_WHEELS:-$DEFAULT}; do
  v=$(grep -i -m1 "^${name//-/[-_]}==" constraints.txt | cut -d= -f3 || true)
  [ -n "$v" ] || { echo "fetch_wheels: $name is not in constraints.txt" >&2; exit 1; }
  specs+=("$name==$v")
done
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
for spec in "${specs[@]}"; do
  # A binary (or pure-Python) wheel for the target; a package published only as an sdist is built here
  # into a wheel (those in the list are pure Python, so the wheel is the same for 3.12).
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
      "${PLAT[@]}" -d "$DEST" "$spec" 2>/dev/null \
    || python3 -m pip wheel -q --no-deps -w "$DEST" "$spec" 2>&1 | { grep -v "^WARNING: Location" || true; }
done
ls "$DEST" | wc -l | xargs echo "fetch_wheels: wheels in $DEST:"
du -sh "$DEST"
