"""Registry of dictionary architectures: name -> SparseCoder subclass (SAELens-style siblings).

Each variant lives in its own small file and registers itself here with
:func:`register`.  :func:`make` builds one from an :class:`~interp.dictionaries.base.SAEConfig`.
SAELens architecture names map onto ours in :mod:`interp.dictionaries.saelens_io`
(``standard`` -> ``relu``).
"""

from __future__ import annotations

import importlib

ARCHS: dict[str, type] = {}
"""Registered architectures by name."""


def register(name: str):
    """Class decorator: register a :class:`SparseCoder` subclass under ``name``."""

    def deco(cls):
        if name in ARCHS and ARCHS[name] is not cls:
            raise ValueError(f"architecture {name!r} is already registered to {ARCHS[name].__name__}")
        ARCHS[name] = cls
        return cls

    return deco


def _load_builtin() -> None:
    for name in ("jumprelu_sae", "relu_sae", "topk_sae"):  # they register themselves
        importlib.import_module(f"{__package__}.{name}")


def make(cfg):
    """Build the dictionary ``cfg.arch`` describes (random tied initialisation)."""
    return ARCHS[cfg.arch](cfg)  # SAEConfig checked cfg.arch

