"""Distributed caching and DDP dictionary training on 2 real gloo ranks, checked against one process.

Each test launches ``torchrun --nproc_per_node=2`` (real ``torch.distributed``, gloo backend,
separate processes talking over TCP).  The reference is always an ordinary single-process
run of the same job in this process: the multi-process result must equal it (byte for byte
for the store; up to float summation order for trained weights).

This file doubles as the training worker: ``torchrun ... tests/test_distributed.py STORE OUT``
trains several dictionaries under one process group (see ``_worker``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
        "foolishness, it was the epoch of belief, it was the epoch of incredulity.\n\n") * 40
CACHE_ARGS = ["--model", "tiny-llama", "--hooks", "blocks.*.hook_resid_post", "blocks.0.attn.hook_z",
              "--n-tokens", "600", "--seq-len", "32", "--batch-size", "4", "--shard-rows", "64",
              "--dtype", "bf16", "--no-progress"]
# manifest fields that legitimately differ between two runs of the same job
RUN_FIELDS = {"created", "last_run"}

# (name, SAEConfig kwargs, TrainConfig kwargs) trained by the worker and by the reference.
# JumpReLU runs with Adam eps 1e-6 instead of the default 6.25e-10: at its tied init a latent that fires alone on
# a row has a reconstruction gradient that is exactly zero in exact arithmetic ((x - b_dec) . W_dec_j cancels),
# so float rounding leaves ~1e-9 of noise, which Adam with eps 6.25e-10 turns into a step of about lr in a random
# direction.  The single-process run is then chaotic: permuting the rows inside each batch alone moved W_enc by
# 0.1-0.4 of its training update (9 orders, AMD EPYC, 1 thread; the 0.195 DDP distance seen on an Intel Xeon is
# inside that), and a DDP that never all-reduces the threshold gradient passed.  With eps 1e-6 the same orders
# move W_enc by 2e-6..1.3e-5 and that broken DDP is 4.8e-3 away (the other jobs: <= 3e-6 at the default eps).
JOBS = [
    ("relu_sae", dict(arch="relu", d_sae=64, hook_in="blocks.1.hook_resid_post", l1_coeff=0.05), {}),
    ("jumprelu_sae", dict(arch="jumprelu", d_sae=64, hook_in="blocks.1.hook_resid_post", l0_coeff=0.01,
                          jumprelu_init_threshold=0.05), {"adam_eps": 1e-6}),
    # TopK with AuxK (dead_after_tokens below makes latents dead); its normalisers are global-batch variances
    ("topk_sae", dict(arch="topk", d_sae=64, hook_in="blocks.1.hook_resid_post", k=4), {}),
    ("relu_transcoder", dict(arch="relu", d_sae=64, hook_in="blocks.0.ln2.hook_normalized",
                             hook_out="blocks.0.hook_mlp_out", l1_coeff=0.05), {}),
]
# The DDP run differs from the single-process run only in float summation order, so its distance to the
# reference is compared with the distances that other summation orders of the same run give, measured in the
# same test (the noise floor): the single-process run with the rows of every batch permuted (N_PERMUTED seeds).
N_PERMUTED = 3
# DDP / max(N_PERMUTED permuted, 4 ulps) measured <= 1.4 over all tensors (AMD EPYC, 1 and 2 threads); one order's
# distance spreads ~5x over seeds (9 orders), so a DDP draw above the max of 3 stays well inside 10x.
FLOOR_MARGIN = 10
# 63 rows per step: the two ranks get 32 and 31 rows, so the share weighting (rows_local / rows_global) is
# exercised on every step, and the epoch tail (1000 % 63 = 55 rows) splits 28 / 27.
TRAIN = dict(n_tokens=24 * 63, batch_size=63, lr=3e-3, warmup_steps=4, dead_after_tokens=256, b_dec_init="mean",
             init_rows=512, seed=3, progress=False, log_every=4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", *args]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"torchrun failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}"
    return p


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.bin"))}


def _comparable(manifest: dict) -> dict:
    m = {k: v for k, v in manifest.items() if k not in RUN_FIELDS}
    m["config"] = {k: v for k, v in m["config"].items() if k != "out"}
    # the torch thread count is how this process ran (torchrun ranks and the test process may differ), not data
    m["versions"] = {k: v for k, v in m.get("versions", {}).items() if k != "threads"}
    return m


def test_dist_cache_two_ranks_equals_single_process(tiny_llama, tmp_path):
    """`torchrun -m interp.cli.main dist cache` on 2 gloo ranks writes the single-process store."""
    from interp.store import ActivationStore, CacheConfig, cache_activations

    corpus = tmp_path / "tale.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "dist"
    p = _torchrun(["-m", "interp.cli.main", "dist", "cache", *CACHE_ARGS, "--corpus", str(corpus),
                   "--out", str(out), "--json"])
    info = json.loads(p.stdout)  # only rank 0 printed: exactly one JSON document
    assert info["n_rows"] == 600 and info["complete"] and info["last_run"]["world_size"] == 2
    assert info["last_run"]["rows"] == 600  # rows written by both ranks

    ref_cfg = CacheConfig(model="tiny-llama", hooks=["blocks.*.hook_resid_post", "blocks.0.attn.hook_z"],
                          corpus=str(corpus), n_tokens=600, context_length=32, batch_size=4, shard_rows=64,
                          dtype="bf16", out=str(tmp_path / "ref"))
    ref = cache_activations(ref_cfg, model=tiny_llama, progress=False)
    dist = ActivationStore.open(out, verify="full")
    assert len(dist.shards) == 10  # 10 shards: 5 written by each rank, the last one short
    assert not list(out.glob("progress-rank*.json")), "per-rank progress files must be merged and removed"
    assert _comparable(dist.manifest) == _comparable(ref.manifest)
    ref_files, dist_files = _files(tmp_path / "ref"), _files(out)
    assert ref_files.keys() == dist_files.keys() and len(ref_files) == 10 * 5
    for name in ref_files:
        assert ref_files[name] == dist_files[name], f"{name} differs"
    torch.testing.assert_close(dist.tokens[:], ref.tokens[:], rtol=0, atol=0)  # exact: the same rows
    torch.testing.assert_close(dist.seq_pos[:], ref.seq_pos[:], rtol=0, atol=0)  # exact
    for h in ref.hooks:
        assert torch.equal(dist.rows(h, slice(None), dtype=None).view(torch.int16),
                           ref.rows(h, slice(None), dtype=None).view(torch.int16))


def test_dist_cli_refuses_commands_that_are_not_rank_aware(capsys):
    from interp.cli.main import main

    assert main(["dist", "sae", "eval"]) == 2  # `sae train` is rank-aware, `sae eval` is not
    assert "['cache', 'sae train', 'transcoder train'], got sae eval" in capsys.readouterr().err


@pytest.mark.slow
def test_dist_cache_killed_then_resumed_equals_uninterrupted(tiny_llama, tmp_path):
    """SIGKILL a 2-rank caching job mid-run; one process resumes it (merging both ranks' progress)."""
    import signal
    import time

    from interp.store import ActivationStore, CacheConfig, cache_activations

    corpus = tmp_path / "tale.txt"
    corpus.write_text(TEXT * 4)
    out = tmp_path / "dist"
    args = dict(model="tiny-llama", hooks=["blocks.*.hook_resid_post"], corpus=str(corpus), n_tokens=6000,
                context_length=40, batch_size=2, shard_rows=80, dtype="float16")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "interp.cli.main", "dist", "cache", "--model", "tiny-llama",
           "--hooks", "blocks.*.hook_resid_post", "--corpus", str(corpus), "--n-tokens", "6000",
           "--seq-len", "40", "--batch-size", "2", "--shard-rows", "80", "--dtype", "fp16",
           "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def recorded(r):
        try:
            return len(json.loads((out / f"progress-rank{r}.json").read_text())["shards"])
        except (FileNotFoundError, json.JSONDecodeError):
            return 0

    try:
        deadline = time.time() + 240
        while min(recorded(0), recorded(1)) < 3 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, f"caching ended before the kill:\n{proc.stderr.read().decode()[-3000:]}"
        # torchrun starts each rank in its own session: SIGKILL the ranks and the agent, no cleanup
        ranks = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert len(ranks) == 2
        for pid in [*ranks, proc.pid]:
            os.kill(pid, signal.SIGKILL)
        proc.wait(30)
        for pid in ranks:  # both ranks are gone before we look at what they left
            while Path(f"/proc/{pid}").exists() and "Z" not in _proc_state(pid):
                time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    partial = json.loads((out / "manifest.json").read_text())
    assert not partial["complete"] and recorded(0) >= 3 and recorded(1) >= 3
    done_before = recorded(0) + recorded(1)

    store = cache_activations(CacheConfig(**args, out=str(out)), model=tiny_llama, progress=False)
    assert store.complete and store.manifest["last_run"]["rows"] == 6000 - 80 * done_before  # nothing redone
    assert not list(out.glob("progress-rank*.json"))
    ref = cache_activations(CacheConfig(**args, out=str(tmp_path / "ref")), model=tiny_llama, progress=False)
    assert _comparable(store.manifest) == _comparable(ref.manifest)
    ref_files, got = _files(tmp_path / "ref"), _files(out)
    assert ref_files.keys() == got.keys()
    assert all(ref_files[k] == got[k] for k in ref_files)
    ActivationStore.open(out, verify="full")


def test_launch_env_errors_are_clear(monkeypatch):
    from interp.parallel import dist_env, distributed

    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with distributed() as env:  # one process: nothing to initialise
        assert env.world_size == 1 and not torch.distributed.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match=r"\['MASTER_ADDR', 'MASTER_PORT'\] is not set: launch with torchrun"):
        with distributed():
            pass
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        dist_env()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        dist_env()


def test_exit_worker_flushes_and_skips_interpreter_teardown_only_for_ranks(tmp_path):
    """A torchrun rank leaves with os._exit after flushing (no atexit); one process exits normally."""
    code = ("import atexit, sys\nfrom interp.parallel import exit_worker\n"
            "atexit.register(lambda: print('atexit ran'))\nprint('saved', end='')\nsys.stderr.write('log')\n"
            "exit_worker(3)\n")
    for world, atexit_ran in (("2", False), ("1", True)):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "WORLD_SIZE": world, "RANK": "0"}
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 3 and p.stdout.startswith("saved") and p.stderr == "log"
        assert ("atexit ran" in p.stdout) == atexit_ran


# -- DDP training ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def train_store(tmp_path_factory, tiny_llama):
    from interp.store import CacheConfig, cache_activations

    d = tmp_path_factory.mktemp("ddp")
    (d / "tale.txt").write_text(TEXT)
    cfg = CacheConfig(model="tiny-llama", hooks=["blocks.1.hook_resid_post", "blocks.0.ln2.hook_normalized",
                                                 "blocks.0.hook_mlp_out"], corpus=str(d / "tale.txt"),
                      n_tokens=1000, context_length=40, batch_size=5, shard_rows=200, dtype="float32",
                      out=str(d / "store"))
    return cache_activations(cfg, model=tiny_llama, progress=False)


def _configs(store, kw, train_kw, ckpt=None):
    from interp.dictionaries import SAEConfig, TrainConfig

    d_out = store.d(kw["hook_out"]) if "hook_out" in kw else None
    scfg = SAEConfig(d_in=store.d(kw["hook_in"]), d_out=d_out, model_name="tiny-llama", **kw)
    return scfg, TrainConfig(**{**TRAIN, **train_kw}, checkpoint_dir=ckpt)


def _worker(store_path: str, out: str) -> None:
    """Runs on every rank under torchrun: DDP-train each job, rank 0 saves the weights."""
    from safetensors.torch import save_file

    from interp.cli.main import main as cli_main
    from interp.dictionaries import train_sae
    from interp.parallel import distributed
    from interp.store import ActivationStore

    torch.set_num_threads(1)
    store = ActivationStore.open(store_path)
    with distributed(backend="gloo") as env:
        assert env.world_size == 2
        for name, kw, train_kw in JOBS:
            scfg, tcfg = _configs(store, kw, train_kw)
            r = train_sae(store, scfg, tcfg)
            if env.is_main:
                save_file({k: v.contiguous() for k, v in r.sae.state_dict().items()}, f"{out}/{name}.safetensors")
                Path(f"{out}/{name}.json").write_text(json.dumps({"steps": r.steps, "tokens": r.tokens}))
        # the command line `interp dist sae train` (checkpoints, SAELens folder and results.json from rank 0)
        assert cli_main(["dist", "--backend", "gloo", "sae", "train", "--store", store_path, "--hook",
                         "blocks.1.hook_resid_post", "--arch", "relu", "--d-sae", "64", "--l1-coeff", "0.05",
                         "--n-tokens", str(TRAIN["n_tokens"]), "--batch-size", str(TRAIN["batch_size"]),
                         "--lr", "3e-3", "--warmup-steps", "4", "--seed", "3", "--checkpoint-every", "8",
                         "--out", f"{out}/cli", "--no-progress", "--json"]) == 0


class _RowsPermuted:
    """A store whose training batches come with their rows permuted (seeded): the same objective for every
    arch here (the losses are means over rows, TopK's normaliser a sum over them), another summation order."""

    def __init__(self, store, seed: int):
        self._store, self._seed = store, seed

    def __getattr__(self, name):
        return getattr(self._store, name)

    def batches(self, hooks, batch_size, **kw):
        g = torch.Generator().manual_seed(self._seed)
        for b in self._store.batches(hooks, batch_size, **kw):
            p = torch.randperm((b[0] if isinstance(b, tuple) else b).shape[0], generator=g)
            yield tuple(t[p] for t in b) if isinstance(b, tuple) else b[p]


def _assert_within_order_noise(what: str, got: dict, store, scfg, tcfg, report: list | None = None):
    """``got`` (a DDP run's state dict) is as close to the single-process run of ``scfg``/``tcfg`` as that run is to
    itself under ``N_PERMUTED`` other row orders inside each batch, up to ``FLOOR_MARGIN``."""
    from interp.dictionaries import make, train_sae

    ref = train_sae(store, scfg, tcfg)
    permuted = [train_sae(_RowsPermuted(store, s), scfg, tcfg).sae.state_dict() for s in range(N_PERMUTED)]
    torch.manual_seed(tcfg.seed)
    start = make(scfg).state_dict()
    for k, v in ref.sae.state_dict().items():
        moved = float((v - start[k]).norm())
        if k.startswith("W_"):
            assert moved > 1e-2, f"{what}.{k} barely trained"
        moved = max(moved, 1e-30)
        dist = float((got[k] - v).norm())
        floor = max(float((p[k] - v).norm()) for p in permuted)
        # 4 float32 ulps of the tensor: the floor when every permuted run happens to round alike
        ulps = 4 * torch.finfo(torch.float32).eps * float(v.norm())
        if report is not None:
            report.append(f"{what}.{k}: DDP {dist / moved:.1e}, permuted <= {floor / moved:.1e} of the update")
        assert dist <= FLOOR_MARGIN * max(floor, ulps), (
            f"{what}.{k}: DDP differs from one process by {dist / moved:.2e} of the training update; reordering "
            f"the rows of each batch in one process moves it by at most {floor / moved:.2e} ({N_PERMUTED} orders)")
    return ref


def test_ddp_two_ranks_equals_single_process(train_store, tmp_path):
    """2 ranks x 32 + 31 rows per step == 1 process x 63 rows per step (ReLU, JumpReLU, TopK, transcoder), up to
    the single-process run's own summation-order noise, measured here."""
    from safetensors.torch import load_file

    from interp.dictionaries import TrainConfig, load_sae
    from interp.results import load_result

    p = _torchrun([__file__, str(train_store.path), str(tmp_path)])
    report = []
    for name, kw, train_kw in JOBS:
        scfg, tcfg = _configs(train_store, kw, train_kw)
        ref = _assert_within_order_noise(name, load_file(tmp_path / f"{name}.safetensors"), train_store, scfg, tcfg,
                                         report)
        meta = json.loads((tmp_path / f"{name}.json").read_text())
        assert meta == {"steps": ref.steps, "tokens": ref.tokens}  # incl. a short epoch-tail batch (1000 % 63 rows)
        assert ref.steps == 24 and ref.tokens == 1000 + 8 * 63
    print("\n".join(report))  # pytest -s shows the margins

    # `interp dist sae train`: same ReLU SAE, written once by rank 0 in SAELens format, plus a checkpoint;
    # only rank 0 printed (exactly one JSON document: rank 1 ran the command too, silenced by `interp dist`)
    scfg, _ = _configs(train_store, JOBS[0][1], {})
    tcfg = TrainConfig(n_tokens=TRAIN["n_tokens"], batch_size=TRAIN["batch_size"], lr=3e-3, warmup_steps=4, seed=3,
                       progress=False)
    cli = load_sae(tmp_path / "cli" / "sae")
    _assert_within_order_noise("cli", cli.state_dict(), train_store, scfg, tcfg)
    state = json.loads((tmp_path / "cli" / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 24 and json.loads(p.stdout)["steps"] == 24
    assert load_result(tmp_path / "cli" / "results.json").saved_to == str(tmp_path / "cli" / "sae")


def _resume_worker(store_path: str, out: str, max_steps: int) -> None:
    """Every rank: DDP-train JOBS[0] into checkpoint dir ``out`` for at most ``max_steps`` more steps."""
    from safetensors.torch import save_file

    from interp.dictionaries import train_sae
    from interp.parallel import distributed
    from interp.store import ActivationStore

    torch.set_num_threads(1)
    store = ActivationStore.open(store_path)
    with distributed(backend="gloo") as env:
        scfg, tcfg = _configs(store, JOBS[0][1], {"checkpoint_every": 4, "max_steps": max_steps}, ckpt=out)
        r = train_sae(store, scfg, tcfg)
        if env.is_main:
            save_file({k: v.contiguous() for k, v in r.sae.state_dict().items()}, f"{out}/final.safetensors")
            Path(f"{out}/result.json").write_text(json.dumps({"steps": r.steps, "history": r.history}))


@pytest.mark.slow
def test_ddp_stopped_then_resumed_on_two_ranks_equals_single_process(train_store, tmp_path):
    """Stop a 2-rank run at step 10 (rank 0 checkpoints), resume it with a new 2-rank job."""
    from safetensors.torch import load_file

    _torchrun([__file__, "resume", str(train_store.path), str(tmp_path), "10"])
    state = json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 10
    _torchrun([__file__, "resume", str(train_store.path), str(tmp_path), "1000"])
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["steps"] == 24 and res["history"][0]["step"] == 12  # went on from step 10 (log every 4)
    scfg, tcfg = _configs(train_store, JOBS[0][1], {})
    _assert_within_order_noise("resumed", load_file(tmp_path / "final.safetensors"), train_store, scfg, tcfg)


if __name__ == "__main__":
    from interp.parallel import exit_worker

    if sys.argv[1] == "resume":
        _resume_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        _worker(sys.argv[1], sys.argv[2])
    exit_worker(0)
