"""Shared fixtures: tiny random models (milliseconds, no download) and the real bundled model (slow)."""

from __future__ import annotations

import os

import pytest
import torch

# One intra-op thread: subprocess tests (torchrun ranks, kill -9 runs) and the notebooks kernel share 2 cores,
# and oversubscribed threads ran tiny-model tests 10-30x slower here.
torch.set_num_threads(int(os.environ.get("INTERP_TEST_THREADS", "1")))


def pytest_report_header(config):
    """The machine in the header of every run: float results depend on the CPU model and the thread count."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"machine: {cpu}, {os.cpu_count()} cores; torch threads: {torch.get_num_threads()} (INTERP_TEST_THREADS)"


@pytest.fixture(scope="session")
def tiny_llama():
    from interp.models import load_model

    return load_model("tiny-llama", device="cpu")


@pytest.fixture(scope="session")
def tiny_gpt2():
    from interp.models import load_model

    return load_model("tiny-gpt2", device="cpu")


@pytest.fixture(scope="session")
def smollm2():
    """The real bundled SmolLM2-135M-Instruct (only for tests marked slow)."""
    from interp.models import load_model

    return load_model("smollm2-135m", device="cpu")


@pytest.fixture(params=[True, False], ids=["fast", "reference"])
def fast(request, monkeypatch):
    """Both sides of interp/fastpath.py's one switch: True runs with ``INTERP_REFERENCE=0`` (the fast
    paths), False with ``INTERP_REFERENCE=1`` (every reference path).  A test calls the API under test
    without ``fast=`` so that the switch picks the path, asserts which path ran, and compares with
    the other path asked for explicitly (``fast=not fast``)."""
    from interp.fastpath import RETIRED

    for name in RETIRED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INTERP_REFERENCE", "0" if request.param else "1")
    return request.param
