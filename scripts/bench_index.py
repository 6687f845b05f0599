"""Print the Markdown index of bench/results/*.json for docs/benchmarks.md: each file with the command
that wrote it (as recorded in the file; "not recorded" where the script did not keep it), the machine
it names, and the date of the commit that last changed it.

    python3 scripts/bench_index.py > /tmp/index.md
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where a results file does not record its command: the script that writes files of that name.
WRITER = {"bench_attribution": "bench/bench_attribution.py --json", "bench_sae_train": "bench/bench_sae_train.py",
          "sae_smollm2": "bench/run_sae_smollm2.py", "sae_circuits": "bench/run_sae_circuits.py",
          "steering_": "bench/bench_steering.py", "transcoder_greater_than": "bench/run_transcoder_greater_than.py"}


def _find(obj, keys, depth=0):
    if isinstance(obj, dict):
        for k in keys:
            if obj.get(k):
                return obj[k]
        if depth < 2:
            for v in obj.values():
                found = _find(v, keys, depth + 1)
                if found is not None:
                    return found
    return None


def _machine(m) -> str:
    if isinstance(m, dict):
        cpu = m.get("cpu") or m.get("processor") or m.get("platform", "")
        cores = m.get("cores") or m.get("cpus")
        return f"{cpu}, {cores} cores" if cores else str(cpu)
    return str(m) if m else "not recorded"


def rows():
    for p in sorted((ROOT / "bench" / "results").glob("*.json")):
        data = json.loads(p.read_text())
        cmd = _find(data, ["command", "cmd"])
        if isinstance(cmd, list):
            cmd = " ".join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd))
        if not cmd:
            writer = next((w for prefix, w in WRITER.items() if p.name.startswith(prefix)), None)
            cmd = f"{writer} (flags not recorded)" if writer else "not recorded"
        cmd = str(cmd).replace("/work/main/.venv/bin/", "").replace("|", "\\|")
        date = subprocess.run(["git", "log", "-1", "--format=%cs", "--", str(p)], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip() or "uncommitted"
        yield p.name, cmd, _machine(_find(data, ["machine", "platform"])), date


def main() -> None:
    print("| results file | command (as recorded) | machine | date |")
    print("| --- | --- | --- | --- |")
    for name, cmd, mach, date in rows():
        print(f"| `bench/results/{name}` | `{cmd}` | {mach} | {date} |")


if __name__ == "__main__":
    main()
