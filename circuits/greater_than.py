"""Greater-than circuit on the bundled model: python circuits/greater_than.py [--method relp] [--out runs/gt].

A thin script over interp.circuits.run_circuit (same as `interp circuit greater-than`).
"""

import sys

from interp.cli.main import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--out" not in args:
        args += ["--out", "runs/greater_than"]
    sys.exit(main(["circuit", "greater-than", *args]))
