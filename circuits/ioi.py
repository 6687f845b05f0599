"""IOI circuit on the bundled model: python circuits/ioi.py [--method relp] [--out runs/ioi].

A thin script over interp.circuits.run_circuit (same as `interp circuit ioi`).
"""

import sys

from interp.cli.main import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--out" not in args:
        args += ["--out", "runs/ioi"]
    sys.exit(main(["circuit", "ioi", *args]))
