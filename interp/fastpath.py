"""One switch for every fast path: a ``fast: bool | None = None`` argument and ``INTERP_REFERENCE=1``.

Every API with a faster implementation beside a plain reference (integrated gradients and their
lean forwards, edge attribution and edge patching, the SNMF kernel, the sparse TopK decoder, the
store's shuffled window fill) takes ``fast``: ``True`` or ``False`` picks the path, ``None`` (the
default) takes the fast one unless the environment variable ``INTERP_REFERENCE`` is ``1``, read at
call time, which turns every fast path off at once.  Each result or record says which path ran
(``IGResult.path``, ``AttributionResult.config["forward"]``, ``EdgeScores.config["fast"]``,
``SNMFResult.path``, ...), and the equivalence tests run both ways (tests/conftest.py, ``fast``).

The per-feature variables of earlier releases (``INTERP_IG_REFERENCE``, ``INTERP_EDGES_REFERENCE``,
``INTERP_SNMF_REFERENCE``, ``INTERP_SPARSE_DECODER``, ``INTERP_STORE_FAST_READ``) are refused with
an error naming the replacement, so a script that sets one does not silently run the other path.
"""

from __future__ import annotations

import os

ENV = "INTERP_REFERENCE"

RETIRED = {
    "INTERP_IG_REFERENCE": "INTERP_REFERENCE=1",
    "INTERP_EDGES_REFERENCE": "INTERP_REFERENCE=1",
    "INTERP_SNMF_REFERENCE": "INTERP_REFERENCE=1",
    "INTERP_SPARSE_DECODER": "INTERP_REFERENCE=1 (it replaces INTERP_SPARSE_DECODER=0)",
    "INTERP_STORE_FAST_READ": "INTERP_REFERENCE=1 (it replaces INTERP_STORE_FAST_READ=0)",
}


def use_fast(fast: bool | None = None) -> bool:
    """``fast`` when given, else ``True`` unless ``INTERP_REFERENCE=1`` asks for the reference paths.

    Raises ValueError when a retired per-feature variable is set, or ``INTERP_REFERENCE`` holds
    anything but ``0``, ``1`` or nothing.
    """
    old = [name for name in RETIRED if name in os.environ]
    if old:
        raise ValueError(f"{old[0]} is no longer read; use {RETIRED[old[0]]} to turn the fast paths off, "
                         f"or pass fast=False (unset {', '.join(old)})")
    if fast is not None:
        return bool(fast)
    value = os.environ.get(ENV, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{ENV} must be 1 (reference paths) or 0 / unset (fast paths), got {value!r}")
    return value != "1"
