"""Property test (hypothesis) of the store writer and reader.

Over random row counts, row shapes (vectors and ``[a, b]`` per-token shapes), storage dtypes
(fp16 / bf16 / fp32), shard sizes, write-chunk sizes and interruption points, a store written
with :func:`interp.store.write_store` must read back as the definition says:

* every access path (random rows, contiguous stream, shuffled batches, rank-split batches)
  returns exactly the source rows cast to the storage dtype (bit for bit);
* an interrupted write leaves a readable store of exactly the whole shards finished before
  the interruption, marked incomplete, with no temp directories, and rewriting completes it;
* one epoch of shuffled batches is a permutation of all rows; ranks get disjoint, equally
  many full batches; the fast window fill (``fast=True``, kernel scatter) and the reference
  (``fast=False``) give bit-identical batches.

Each row carries its own index in an ``id`` stream (exact in every dtype for < 256 rows), so
the tests check alignment across hooks and which rows came back, not only values.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interp.store import ActivationStore, write_store

# tmpfs when there is one: hundreds of fsyncs per example cost seconds on a disk, nothing in RAM
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None
TORCH_DT = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class _Interrupted(Exception):
    pass


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32) if t.dtype == torch.float32 else t.view(torch.int16)


@st.composite
def cases(draw):
    n_rows = draw(st.integers(1, 200))
    shapes = draw(st.lists(st.one_of(st.tuples(st.integers(1, 7)), st.tuples(st.integers(1, 3), st.integers(1, 3))),
                           min_size=1, max_size=2))
    return dict(
        n_rows=n_rows, shapes=shapes, dtype=draw(st.sampled_from(sorted(TORCH_DT))),
        shard_rows=draw(st.integers(1, 64)), chunk_rows=draw(st.integers(1, 50)),
        cut=draw(st.one_of(st.none(), st.integers(1, n_rows))), seed=draw(st.integers(0, 2**16)),
        batch_size=draw(st.integers(1, 40)), read_chunk=draw(st.integers(1, 30)),
        window_batches=draw(st.integers(1, 4)),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=cases())
def test_writer_reader_roundtrip_with_interruptions(c):
    rng = np.random.default_rng(c["seed"])
    n = c["n_rows"]
    data = {f"blocks.{i}.hook_x": (rng.standard_normal((n, *shape)) * 3).astype(np.float32)
            for i, shape in enumerate(c["shapes"])}
    data["id"] = np.arange(n, dtype=np.float32)[:, None]
    want = {h: torch.from_numpy(a.reshape(n, -1)).to(TORCH_DT[c["dtype"]]) for h, a in data.items()}
    interrupt = {"cut": c["cut"] if c["cut"] is not None and c["cut"] < n else None}

    def source(h):
        def fn(a, b):
            if interrupt["cut"] is not None and b > interrupt["cut"]:
                raise _Interrupted(f"rows [{a}, {b})")
            return data[h][a:b]

        return fn

    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        d = Path(tmp) / "store"
        kw = dict(n_rows=n, dtype=c["dtype"], shard_rows=c["shard_rows"], chunk_rows=c["chunk_rows"],
                  tokens=lambda a, b: np.arange(a, b))
        if interrupt["cut"] is not None:
            with pytest.raises(_Interrupted):
                write_store(d, {h: source(h) for h in data}, **kw)
            # the failing chunk starts at a_f; every shard wholly before it was published
            a_f = interrupt["cut"] // c["chunk_rows"] * c["chunk_rows"]
            expect_rows = a_f // c["shard_rows"] * c["shard_rows"]
            s = ActivationStore.open(d, verify="full")
            assert s.n_rows == expect_rows and not s.complete
            assert not list((d / "shards").glob(".tmp-*")), "an interrupted write left temp shards"
            for h in data:
                assert torch.equal(_bits(s.rows(h, slice(None), dtype=None)), _bits(want[h][:expect_rows]))
            interrupt["cut"] = None  # rerun the same write: it completes the store

        write_store(d, {h: source(h) for h in data}, **kw)
        s = ActivationStore.open(d, verify="full")
        assert s.complete and s.n_rows == n and len(s.shards) == -(-n // c["shard_rows"])
        for i, shape in enumerate(c["shapes"]):
            assert s.row_shape(f"blocks.{i}.hook_x") == tuple(shape)
        assert torch.equal(s.tokens[:], torch.arange(n))

        # random access (negative indices too) and contiguous streaming
        idx = rng.integers(-n, n, size=min(n, 30))
        for h in data:
            assert torch.equal(_bits(s.rows(h, idx, dtype=None)), _bits(want[h][torch.from_numpy(idx % n)]))
            streamed = torch.cat(list(s.stream(h, c["batch_size"], dtype=None)))
            assert torch.equal(_bits(streamed), _bits(want[h]))

        # shuffled batches: aligned across hooks, one epoch = a permutation of the rows
        hooks = list(data)
        ids = []
        win = dict(chunk_rows=c["read_chunk"], buffer_rows=c["batch_size"] * c["window_batches"])
        for batch in s.batches(hooks, c["batch_size"], seed=c["seed"], dtype=None, **win):
            rid = batch[-1].float().long()[:, 0]
            for h, t in zip(hooks, batch):
                assert torch.equal(_bits(t), _bits(want[h][rid]))
            ids.append(rid)
        assert torch.equal(torch.cat(ids).sort().values, torch.arange(n))
        # the fast window fill (kernel scatter) and the reference (staging + numpy scatter) agree bit for bit
        fast = list(s.batches(hooks, c["batch_size"], seed=c["seed"], dtype=None, fast=True, **win))
        ref = list(s.batches(hooks, c["batch_size"], seed=c["seed"], dtype=None, fast=False, **win))
        assert len(fast) == len(ref) == len(ids)
        assert all(torch.equal(_bits(x), _bits(y)) for f, r in zip(fast, ref) for x, y in zip(f, r))

        # two ranks: disjoint rows, the same number of full batches each
        per_rank = []
        for r in range(2):
            bs = list(s.batches("id", c["batch_size"], seed=c["seed"], rank=r, world_size=2, dtype=torch.float32,
                                **win))
            assert all(b.shape[0] == c["batch_size"] for b in bs)
            per_rank.append(torch.cat(bs).long()[:, 0] if bs else torch.empty(0, dtype=torch.long))
        assert len(per_rank[0]) == len(per_rank[1])
        assert not set(per_rank[0].tolist()) & set(per_rank[1].tolist())
