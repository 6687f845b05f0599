"""The Bigram-Backcopy generator obeys its definition; a small trained model shows the mechanism."""

from __future__ import annotations

import json

import pytest
import torch

from interp.toy.bigram_backcopy import BBTask, BBTrainConfig, bb_mechanism, bb_tokenizer, load_task, train_bb


def test_generator_follows_the_definition():
    task = BBTask(n_triggers=3, seq_len=48)
    marginal, bigram, triggers = task.tables()
    # tables are distributions; triggers are the top-3 characters by frequency in the text
    assert torch.allclose(bigram.sum(1), torch.ones(len(bigram)))
    counts = {c: task.text.count(c) for c in task.chars}
    top = sorted(counts, key=counts.get, reverse=True)[:3]
    assert sorted(task.chars[i] for i in triggers) == sorted(top)
    assert marginal[task.chars.index("e")] == pytest.approx(counts["e"] / len(task.text))
    x = task.sample(200, torch.Generator().manual_seed(0))
    assert x.shape == (200, 48) and (x[:, 0] == task.bos_id).all()
    is_trig = torch.isin(x, triggers)
    assert not is_trig[:, 1].any()  # x1 from the marginal without triggers
    for t in range(2, 47):  # after a trigger the previous token is copied
        m = is_trig[:, t]
        assert torch.equal(x[m, t + 1], x[m, t - 1])
    # every non-copy transition has positive bigram probability
    nt = ~is_trig[:, 1:-1]
    a, b = x[:, 1:-1][nt], x[:, 2:][nt]
    assert (bigram[a, b] > 0).all()
    # empirical bigram frequencies follow the table (loose check on the most frequent row)
    row = int(a.mode().values)
    emp = torch.bincount(b[a == row], minlength=len(bigram)).float()
    emp /= emp.sum()
    assert (emp - bigram[row]).abs().max() < 0.1
    assert task.trigger_mask(x)[:, :2].sum() == 0


def test_tokenizer_and_bad_input():
    task = BBTask()
    tok = bb_tokenizer(task)
    ids = tok("To be")["input_ids"]
    assert ids[0] == task.bos_id and [task.vocab[i] for i in ids[1:]] == list("To be")
    with pytest.raises(ValueError, match="seq_len"):
        BBTask(seq_len=2)
    with pytest.raises(ValueError, match="n_triggers"):
        BBTask(n_triggers=0)
    with pytest.raises(ValueError, match="arch"):
        BBTrainConfig(arch="mamba")
    with pytest.raises(ValueError, match="steps"):
        BBTrainConfig(steps=0)
    with pytest.raises(ValueError, match="n must be"):
        task.sample(0)


def test_small_run_learns_backcopy_and_dormancy(tmp_path):
    """~15 CPU seconds: the head copies the previous token at triggers (ablating it there costs
    nats) and is functionally dormant elsewhere (ablating it there costs ~nothing)."""
    from interp.models import load_model

    task = BBTask(seq_len=32)
    cfg = BBTrainConfig(steps=250, batch_size=32, checkpoint_steps=(0, 50, 250))
    run = train_bb(tmp_path, task, cfg, device="cpu")
    assert run.steps == [0, 50, 250]
    for s in run.steps:
        assert (tmp_path / f"step_{s:06d}" / "model.safetensors").exists()
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pt"))
    assert load_task(tmp_path / "step_000250") == task
    assert json.loads((tmp_path / "bb_task.json").read_text())["kind"] == "bigram_backcopy"
    m0 = bb_mechanism(load_model(str(tmp_path / "step_000000"), device="cpu"), task, n_seqs=32)
    m = bb_mechanism(load_model(str(tmp_path / "step_000250"), device="cpu"), task, n_seqs=32)
    assert m0.attn_prev_at_trigger[0] < 0.2
    assert m.attn_prev_at_trigger[0] > 0.7  # backcopy
    assert m.loss_trigger < 0.3 < m0.loss_trigger
    assert m.ablation_delta_trigger[0] > 1.0  # active at triggers, causally
    assert abs(m.ablation_delta_other[0]) < 0.05  # dormant elsewhere, causally
    assert m.attn_bos_at_other[0] > m.attn_bos_at_trigger[0] * 10


@pytest.mark.slow
def test_full_run_sink_value_drain_and_dynamics(tmp_path):
    """3 layers x 1 head, 32-token sequences, 2500 Adam steps, no weight decay, seed 0 (about 2 CPU
    minutes unloaded, 5-8 under load).  Layer 0's head backcopies at triggers and sinks to ⟨s⟩
    elsewhere (Guo et al. 2024's definitions, measured on held-out sequences), its value at ⟨s⟩ is
    drained, and ``interp massive --checkpoints`` fits the five-parameter dynamics to every layer."""
    from interp.cli.main import main
    from interp.models import load_model

    task = BBTask(seq_len=32)
    run = train_bb(tmp_path / "bb", task, BBTrainConfig(n_layers=3, steps=2500, weight_decay=0.0), device="cpu")
    first = bb_mechanism(load_model(str(tmp_path / "bb" / "step_000000"), device="cpu"), task)
    last = bb_mechanism(load_model(str(tmp_path / "bb" / "step_002500"), device="cpu"), task)
    print("first", first, "\nlast", last)
    assert last.attn_prev_at_trigger[0] >= 0.9 and last.ablation_delta_trigger[0] > 2.0  # active: backcopy
    assert last.attn_bos_at_other[0] >= 0.8  # dormant: sink to ⟨s⟩ off-trigger
    assert first.attn_bos_at_other[0] < 0.2  # ... which emerged during training
    assert abs(last.ablation_delta_other[0]) < 0.01  # ... and is functionally silent there
    assert last.value_drain[0] < 0.5  # ‖v(⟨s⟩)‖ < 0.5 x mean_{i>=1} ‖v(i)‖
    assert last.value_drain[0] < 0.5 * first.value_drain[0]  # drained during training
    out = tmp_path / "massive"
    assert main(["massive", "--checkpoints", str(tmp_path / "bb"), "--out", str(out), "--device", "cpu"]) == 0
    dyn = json.loads((out / "results.json").read_text())["dynamics"]
    assert dyn["steps"] == run.steps and len(dyn["fits"]) == 3
    r2 = [f["r2"] if f else None for f in dyn["fits"]]
    print("dynamics R^2 per layer", r2)
    assert all(f is not None and 0.0 <= f["r2"] <= 1.0 for f in dyn["fits"])
