"""Activation store: stored rows equal a direct run_with_cache; reading paths; bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from interp.store import ActivationStore, CacheConfig, StoreError, cache_activations


TEXT = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age "
    "of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season "
    "of Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair.\n\n"
)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("corpus") / "tale.txt"
    p.write_text(TEXT * 40)
    return p


def _cfg(tmp_path, corpus_file, **kw):
    base = dict(model="tiny-llama", hooks=["blocks.*.hook_resid_post"], corpus=str(corpus_file), n_tokens=700,
                context_length=48, batch_size=4, dtype="float32", shard_rows=160, out=str(tmp_path / "store"))
    base.update(kw)
    return CacheConfig(**base)


def _reference(model, store, hook):
    """Run the model directly on the stored sequences and return [n_rows, d] rows of ``hook``."""
    C = store.manifest["context_length"]
    seq_pos = store.seq_pos[:]
    n_seq = int(seq_pos[-1, 0]) + 1
    tokens = torch.zeros(n_seq, C, dtype=torch.long)
    tokens[seq_pos[:, 0], seq_pos[:, 1]] = store.tokens[:]
    if store.manifest["skip_bos"]:
        tokens[:, 0] = store.manifest["bos_token_id"]
    # in the store's own batches: a float32 matmul's rounding can depend on the batch shape (seen on Intel
    # Xeon, not on AMD EPYC), and one ulp there can flip a float16 rounding of the stored value
    bs = store.manifest.get("batch_size") or n_seq
    acts = []
    for i in range(0, n_seq, bs):
        _, cache = model.run_with_cache(tokens[i:i + bs], names_filter=[hook])
        acts.append(cache[hook])
    act = torch.cat(acts)
    return act[seq_pos[:, 0], seq_pos[:, 1]].reshape(store.n_rows, -1)


@pytest.mark.parametrize("dtype,tol", [("float32", 0.0), ("float16", 1e-3), ("bfloat16", 8e-3)])
def test_rows_equal_run_with_cache(tiny_llama, tmp_path, corpus_file, dtype, tol):
    hooks = ["blocks.*.hook_resid_post", "blocks.0.attn.hook_z", "blocks.1.mlp.hook_post"]
    store = cache_activations(_cfg(tmp_path, corpus_file, dtype=dtype, hooks=hooks), model=tiny_llama, progress=False)
    assert store.n_rows == 700 and store.complete
    assert store.hooks == ["blocks.0.hook_resid_post", "blocks.0.attn.hook_z", "blocks.1.hook_resid_post",
                           "blocks.1.mlp.hook_post"]
    assert store.row_shape("blocks.0.attn.hook_z") == (4, 8)
    for h in store.hooks:
        ref = _reference(tiny_llama, store, h)
        got = store.rows(h, np.arange(store.n_rows))
        expect = ref.to(store.torch_dtype).float()  # exactly what storing at this dtype should give
        assert torch.equal(got, expect), h
        # tol: one rounding to the storage dtype (fp16 2^-11, bf16 2^-8 relative, x2)
        assert torch.allclose(got, ref, rtol=tol, atol=tol), h


def test_skip_bos_and_layout(tiny_gpt2, tmp_path, corpus_file):
    store = cache_activations(_cfg(tmp_path, corpus_file, skip_bos=True, dtype="float16", n_tokens=500),
                              model=tiny_gpt2, progress=False)
    sp = store.seq_pos[:]
    assert sp.shape == (500, 2) and int(sp[:, 1].min()) == 1 and int(sp[0, 0]) == 0
    assert torch.equal(sp[:47, 1], torch.arange(1, 48))
    # the stored tokens are the corpus text in order (char tokenizer: one char per token)
    text = tiny_gpt2.tokenizer.decode(store.tokens[:47].tolist())
    assert text == TEXT[:47]
    h = "blocks.1.hook_resid_post"
    assert torch.equal(store.rows(h, range(500)), _reference(tiny_gpt2, store, h).half().float())


def test_reading_paths_agree(tiny_llama, tmp_path, corpus_file):
    store = cache_activations(_cfg(tmp_path, corpus_file, n_tokens=1000), model=tiny_llama, progress=False)
    h = "blocks.1.hook_resid_post"
    full = store.rows(h, slice(None))
    assert full.shape == (1000, 32)
    assert torch.equal(torch.cat(list(store.stream(h, 64))), full)
    assert torch.equal(torch.cat(list(store.stream(h, 7, start=100, stop=555))), full[100:555])
    assert torch.equal(store.rows(h, [999, 0, -1, 161]), full[[999, 0, 999, 161]])
    # shuffled batches: a permutation of all rows; aligned across hooks; deterministic per seed
    batches = list(store.batches(["blocks.0.hook_resid_post", h], 50, seed=3, chunk_rows=16, buffer_rows=250))
    got = torch.cat([b[1] for b in batches])
    assert got.shape == full.shape and not torch.equal(got, full)
    # as multisets, the (hook 0, hook 1) row pairs equal the stored pairs: a permutation, aligned
    pairs = torch.cat([torch.cat([b[0] for b in batches]), got], 1)
    full_pairs = torch.cat([store.rows("blocks.0.hook_resid_post", slice(None)), full], 1)
    assert sorted(map(tuple, pairs.tolist())) == sorted(map(tuple, full_pairs.tolist()))
    again = torch.cat(list(store.batches(h, 50, seed=3, chunk_rows=16, buffer_rows=250)))
    assert torch.equal(again, got)
    assert not torch.equal(torch.cat(list(store.batches(h, 50, seed=4, chunk_rows=16, buffer_rows=250))), got)
    # DDP sharding: ranks are disjoint, equal in batch count, and together cover most rows
    parts = [list(store.batches(h, 50, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) > 0
    from collections import Counter

    seen = Counter(tuple(x) for p in parts for b in p for x in b.tolist())
    stored = Counter(map(tuple, full.tolist()))
    assert not seen - stored  # no row served twice (beyond its multiplicity in the store)
    assert sum(seen.values()) >= 1000 - 2 * 160 - 2 * 50
    # epochs reshuffle
    two = list(store.batches(h, 100, epochs=2, seed=0))
    assert len(two) == 20 and not torch.equal(two[0], two[10])
    # dtype / device conversion
    assert store.rows(h, [1, 2], dtype=torch.float16).dtype == torch.float16
    # a device other than CPU/CUDA is honoured, not silently left on the CPU ("meta": torch's shape-only device)
    on_meta = store.rows(h, [1, 2], device="meta", dtype=torch.float16)
    assert on_meta.device.type == "meta" and on_meta.dtype == torch.float16 and on_meta.shape == (2, full.shape[1])
    assert next(iter(store.batches(h, 50, seed=0, device="meta"))).device.type == "meta"


def test_manifest_contents(tiny_llama, tmp_path, corpus_file):
    store = cache_activations(_cfg(tmp_path, corpus_file), model=tiny_llama, progress=False)
    m = json.loads((tmp_path / "store" / "manifest.json").read_text())
    from interp.models import weight_hash

    assert m["model"] == "tiny-llama" and m["weight_hash"] == weight_hash(tiny_llama)
    assert m["hooks"] == store.hooks and m["dtype"] == "float32" and m["context_length"] == 48
    assert m["corpus"]["kind"] == "text" and m["complete"] is True
    assert [s["index"] for s in m["shards"]] == [0, 1, 2, 3, 4] and sum(s["rows"] for s in m["shards"]) == 700
    assert all(set(s["files"]) == {"blocks.0.hook_resid_post.bin", "blocks.1.hook_resid_post.bin", "tokens.bin",
                                   "seq_pos.bin"} for s in m["shards"])


def test_bad_inputs(tiny_llama, tmp_path, corpus_file):
    from interp.models import HookNotFoundError, ModelNotFoundError

    with pytest.raises(HookNotFoundError, match="hook_nope"):
        cache_activations(_cfg(tmp_path, corpus_file, hooks=["blocks.*.hook_nope"]), model=tiny_llama)
    with pytest.raises(ValueError, match="n_ctx=128"):
        cache_activations(_cfg(tmp_path, corpus_file, context_length=129), model=tiny_llama)
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        cache_activations(_cfg(tmp_path, corpus_file, model="no-such-model"))
    with pytest.raises(ValueError, match="not per-token"):
        cache_activations(_cfg(tmp_path, corpus_file, hooks=["blocks.0.attn.hook_pattern"]), model=tiny_llama)
    with pytest.raises(ValueError, match="unknown store dtype"):
        _cfg(tmp_path, corpus_file, dtype="int8")
    with pytest.raises(ValueError, match="positive integer"):
        _cfg(tmp_path, corpus_file, n_tokens=0)
    with pytest.raises(ValueError, match="too short|yields only"):
        cache_activations(_cfg(tmp_path, corpus_file, n_tokens=10**6), model=tiny_llama, progress=False)
    # a store written with other settings is not resumed, whatever differs
    out = tmp_path / "other"
    cache_activations(_cfg(tmp_path, corpus_file, out=str(out)), model=tiny_llama, progress=False)
    with pytest.raises(StoreError, match="dtype: store has 'float32', this run has 'float16'"):
        cache_activations(_cfg(tmp_path, corpus_file, out=str(out), dtype="float16"), model=tiny_llama)
    with pytest.raises(StoreError, match="weight_hash"):
        from interp.models import load_model

        cache_activations(_cfg(tmp_path, corpus_file, out=str(out), model="tiny-llama"),
                          model=load_model("tiny-gpt2", device="cpu"))
    with pytest.raises(StoreError, match="hooks"):
        cache_activations(_cfg(tmp_path, corpus_file, out=str(out), hooks=["blocks.0.hook_resid_post"]),
                          model=tiny_llama)
    store = ActivationStore.open(out)
    with pytest.raises(KeyError, match="not in this store"):
        store.rows("blocks.0.hook_mlp_out", [0])
    for read in (store.stream, store.batches):  # generators: the arguments are checked at the first next()
        with pytest.raises(KeyError, match="not in this store"):
            next(read("blocks.0.hook_mlp_out", 8))
        with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
            next(read("blocks.0.hook_resid_post", 0))
    with pytest.raises(IndexError, match="out of range"):
        store.rows("blocks.0.hook_resid_post", [700])
    with pytest.raises(FileNotFoundError, match="not an activation store"):
        ActivationStore.open(tmp_path)


@pytest.mark.slow
def test_smollm2_store_equals_run_with_cache(smollm2, tmp_path):
    """The real model, default corpus, every residual stream, fp16 (~256 tokens)."""
    cfg = CacheConfig(model="smollm2-135m", hooks=["blocks.*.hook_resid_post", "blocks.3.attn.hook_z"],
                      corpus="default", n_tokens=256, context_length=64, batch_size=2, dtype="float16",
                      out=str(tmp_path / "s"))
    store = cache_activations(cfg, model=smollm2, progress=False)
    assert store.n_rows == 256 and len(store.hooks) == 31 and store.d("blocks.3.attn.hook_z") == 9 * 64
    assert store.manifest["corpus"]["kind"] == "default"
    text = smollm2.tokenizer.decode(store.tokens[1:64].tolist())
    assert sum(c.isalpha() for c in text) > 0.6 * len(text)  # natural text, not random tokens
    for h in ["blocks.0.hook_resid_post", "blocks.3.attn.hook_z", "blocks.29.hook_resid_post"]:
        ref = _reference(smollm2, store, h)
        got = store.rows(h, slice(None))
        assert torch.equal(got, ref.half().float()), h
        # fp16 storage: one rounding, 2^-11 relative x2
        assert torch.allclose(got, ref, rtol=1e-3, atol=1e-3 * ref.abs().max().item()), h


@pytest.mark.slow
def test_smollm2_context_beyond_model_is_an_error(smollm2, tmp_path):
    n_ctx = smollm2.cfg.n_ctx
    with pytest.raises(ValueError, match=f"n_ctx={n_ctx}"):
        cache_activations(CacheConfig(model="smollm2-135m", context_length=n_ctx + 1, out=str(tmp_path / "s")),
                          model=smollm2)


def test_cli_cache_and_store_info_json(tmp_path, corpus_file, capsys):
    from interp.cli.main import main

    out = tmp_path / "cli"
    rc = main(["cache", "--model", "tiny-gpt2", "--hooks", "blocks.1.hook_resid_post", "blocks.0.attn.hook_z",
               "--n-tokens", "300", "--seq-len", "30", "--batch-size", "4", "--dtype", "bf16",
               "--corpus", str(corpus_file), "--out", str(out), "--skip-bos", "--json"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_rows"] == 300 and info["dtype"] == "bfloat16" and info["complete"] and info["skip_bos"]
    assert list(info["hooks"]) == ["blocks.0.attn.hook_z", "blocks.1.hook_resid_post"]
    assert main(["store", "info", str(out), "--json", "--verify"]) == 0
    info2 = json.loads(capsys.readouterr().out)
    assert info2["verify"]["ok"] and info2["verify"]["files"] == 4 and info2["bytes"] == 300 * (2 * 32 * 2 + 20)
    assert main(["store", "info", str(out)]) == 0
    assert "complete" in capsys.readouterr().out
    # errors exit 2 with the message, no traceback
    assert main(["store", "info", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["cache", "--model", "no-such-model", "--out", str(tmp_path / "x"), "--corpus", str(corpus_file)]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_out_dir_and_manifest_errors(tiny_llama, tmp_path, corpus_file):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty and holds no store manifest"):
        cache_activations(_cfg(tmp_path, corpus_file, out=str(busy)), model=tiny_llama, progress=False)
    assert (busy / "notes.txt").read_text() == "mine"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="manifest.json is not valid JSON"):
        ActivationStore.open(bad)
    (bad / "manifest.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(StoreError, match="lacks the field 'model'"):
        ActivationStore.open(bad)


def test_non_finite_activations_are_refused(tmp_path, corpus_file):
    """fp16 overflows above 65504: such a batch is refused with a clear error, nothing of it kept."""
    from interp.models import load_model

    model = load_model("tiny-llama", device="cpu")
    with torch.no_grad():
        model.original_model.get_input_embeddings().weight.mul_(1e7)  # embeddings ~1e5 > fp16 max
    cfg = _cfg(tmp_path, corpus_file, hooks=["hook_embed"], dtype="float16")
    with pytest.raises(ValueError, match=r"non-finite activations .*hook_embed.*float16.*bf16 or fp32"):
        cache_activations(cfg, model=model, progress=False)
    assert not [p for p in (tmp_path / "store" / "shards").iterdir()]  # no shard, no temp left
    store = cache_activations(_cfg(tmp_path, corpus_file, hooks=["hook_embed"], dtype="float32", out=str(tmp_path / "f")),
                              model=model, progress=False)
    assert store.rows("hook_embed", [0]).abs().max() > 65504


def _id_store(tmp_path, n, shard_rows):
    """A store whose single hook holds each row's own index (exact in fp32)."""
    from interp.store import write_store

    write_store(tmp_path / "ids", {"id": lambda a, b: np.arange(a, b, dtype=np.float32)[:, None]}, n,
                dtype="float32", shard_rows=shard_rows, chunk_rows=shard_rows)
    return ActivationStore.open(tmp_path / "ids")


@pytest.mark.parametrize("fast", [True, False])
def test_shuffled_batches_window_guarantee(tmp_path, fast):
    """The documented guarantee: every row once per epoch; a batch holds rows of the chunks of one
    window only; a window's batches together are exactly its chunks; seeds reproduce.  Both
    window fills (kernel scatter, reference staging + scatter) are held to it."""
    store = _id_store(tmp_path, 200, 48)  # shards of 48 rows: chunks of 6 never straddle a shard
    kw = dict(chunk_rows=6, buffer_rows=24, dtype=torch.float32, fast=fast)
    for epoch_batches in [list(store.batches("id", 8, seed=5, epochs=3, **kw))]:
        ids = [b[:, 0].long() for b in epoch_batches]
        per_epoch = [torch.cat(ids[i : i + 25]) for i in range(0, 75, 25)]  # 200 / 8 = 25 batches an epoch
        for e in per_epoch:
            assert torch.equal(e.sort().values, torch.arange(200))  # exactly once per epoch
        assert not torch.equal(per_epoch[0], per_epoch[1])  # epochs reshuffle
    chunk_of = lambda r: (r // 48, (r % 48) // 6)  # noqa: E731  (shard, chunk within shard)
    for w in range(0, 24, 3):  # windows of 24 rows = 3 batches of 8
        window = torch.cat(ids[w : w + 3])
        chunks = {chunk_of(int(r)) for r in window}
        # the window's rows are whole chunks, but for at most two (a chunk straddling a window end is split)
        members = {c: [r for r in range(200) if chunk_of(r) == c] for c in chunks}
        partial = [c for c in chunks if {int(r) for r in window if chunk_of(int(r)) == c} != set(members[c])]
        assert len(chunks) <= 24 // 6 + 1 and len(partial) <= 2
        for b in ids[w : w + 3]:
            assert {chunk_of(int(r)) for r in b} <= chunks
    again = [b[:, 0].long() for b in store.batches("id", 8, seed=5, epochs=3, **kw)]
    assert all(torch.equal(x, y) for x, y in zip(again, ids))


@pytest.mark.parametrize("fast", [True, False])
def test_shuffled_batch_is_a_uniform_subset(tmp_path, fast):
    """With one-row chunks and one window, batch 0 is a uniformly random subset: over 400 seeds
    each of 64 rows lands in it ~50 times (chi-square, 63 degrees of freedom; p < 1e-4 fails)."""
    store = _id_store(tmp_path, 64, 16)
    counts = np.zeros(64)
    for seed in range(400):
        first = next(iter(store.batches("id", 8, seed=seed, chunk_rows=1, buffer_rows=64, fast=fast)))
        counts[first[:, 0].long().numpy()] += 1
    expected = 400 * 8 / 64
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 112.0, chi2  # chi2_{63} quantile 1 - 1e-4 is ~111.5
    # and the whole store mixes: every row appears in batch 0 for some seed
    assert (counts > 0).all()
