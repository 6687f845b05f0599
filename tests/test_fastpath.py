"""interp/fastpath.py: one switch for every fast path, read at call time; retired variables refused."""

import pytest
import torch

from interp.dictionaries import sparse_decode as sd
from interp.fastpath import RETIRED, use_fast


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in (*RETIRED, "INTERP_REFERENCE"):
        monkeypatch.delenv(name, raising=False)


def test_explicit_argument_wins_and_env_is_read_at_call_time(monkeypatch):
    assert use_fast() is True
    monkeypatch.setenv("INTERP_REFERENCE", "1")
    assert use_fast() is False and use_fast(True) is True
    monkeypatch.setenv("INTERP_REFERENCE", "0")
    assert use_fast() is True and use_fast(False) is False


@pytest.mark.parametrize("name", sorted(RETIRED))
@pytest.mark.parametrize("value", ["0", "1"])
def test_retired_variables_are_refused_with_the_replacement(monkeypatch, name, value):
    """Any value (INTERP_SPARSE_DECODER=0 meant reference, INTERP_IG_REFERENCE=1 too): a clear error, also
    through an API that has a fast path, so an old script never silently runs the other path."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"{name} is no longer read; use INTERP_REFERENCE=1"):
        use_fast()
    with pytest.raises(ValueError, match=name):
        sd.sparse_decode(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1), torch.ones(2, 3), fast=True)


@pytest.mark.parametrize("value", ["yes", "true", "2", "off"])
def test_bad_value_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("INTERP_REFERENCE", value)
    with pytest.raises(ValueError, match="INTERP_REFERENCE must be 1"):
        use_fast()
