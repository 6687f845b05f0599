"""Tasks: validation errors, and the IOI / greater-than generators' structure."""

import pytest
import torch

from interp.tasks import Task, greater_than_task, ioi_task, make_task


def test_from_prompts_builds_aligned_tokens(tiny_llama):
    t = Task.from_prompts(tiny_llama, ["ab c", "xy z"], ["ab d", "xy w"], answers=[("c", "d"), ("z", "w")])
    assert t.clean.shape == t.corrupt.shape == (2, 5)
    assert t.answers.tolist() == [[tiny_llama.tokenizer.encode(c, add_special_tokens=False)[0] for c in p]
                                  for p in [("c", "d"), ("z", "w")]]
    logits = torch.zeros(2, 5, 99)
    logits[0, -1, t.answers[0, 0]] = 3.0
    logits[1, -1, t.answers[1, 1]] = 2.0
    assert t.metric(logits).tolist() == [3.0, -2.0]
    # without BOS: the same tokens less the first column, which is the tokenizer's BOS id
    nb = Task.from_prompts(tiny_llama, ["ab c", "xy z"], ["ab d", "xy w"], prepend_bos=False)
    assert torch.equal(nb.clean, t.clean[:, 1:]) and torch.equal(nb.corrupt, t.corrupt[:, 1:])
    assert (t.clean[:, 0] == tiny_llama.tokenizer.bos_token_id).all()


def test_unequal_lengths_error(tiny_llama):
    with pytest.raises(ValueError, match="unequal token lengths"):
        Task.from_prompts(tiny_llama, ["ab", "abc"], ["xy", "xyz"], answers=[("a", "b")] * 2)
    with pytest.raises(ValueError, match="same token length as its prompt"):
        Task.from_prompts(tiny_llama, ["ab", "cd"], ["xyz", "xyz"], answers=[("a", "b")] * 2)


def test_multi_token_answer_error(tiny_llama):
    with pytest.raises(ValueError, match="answers must be single"):
        Task.from_prompts(tiny_llama, ["ab"], ["cd"], answers=[("xy", "z")])


def test_answer_count_error(tiny_llama):
    with pytest.raises(ValueError, match=r"answers must be \[B, 2\] with B = 2 prompts, got \[1, 2\]"):
        Task.from_prompts(tiny_llama, ["ab", "cd"], ["xy", "zw"], answers=[("a", "b")])


def test_empty_dataset_error(tiny_llama):
    with pytest.raises(ValueError, match="empty"):
        Task.from_prompts(tiny_llama, [], [], answers=[])
    with pytest.raises(ValueError, match="corrupted prompts"):
        Task.from_prompts(tiny_llama, ["ab"], [], answers=[("a", "b")])


def test_unknown_metric_error(tiny_llama):
    with pytest.raises(ValueError, match="unknown metric"):
        Task.from_prompts(tiny_llama, ["ab"], ["cd"], answers=[("a", "b")], metric="nope")


def test_ioi_structure_char_tokenizer(tiny_llama):
    t = ioi_task(tiny_llama, n=6, seed=1)
    assert t.clean.shape == t.corrupt.shape and t.clean.shape[0] == 6
    for i in range(6):
        row = t.clean[i]
        io, s = t.answers[i].tolist()
        assert row[t.positions["IO"][i]] == io and row[t.positions["S1"][i]] == s
        assert row[t.positions["S2"][i]] == s and t.positions["S2"][i] > t.positions["S1"][i]
        assert (row == io).sum() == 1  # IO appears once, S twice
        assert (t.corrupt[i] == s).sum() <= 1  # ABC corruption: the subject is no longer repeated
    assert t.meta["kinds"][:2] == ["ABBA", "BABA"]


def test_ioi_s2_corruption_changes_only_s2_to_the_io_name(tiny_llama):
    clean = ioi_task(tiny_llama, n=6, seed=1)
    t = ioi_task(tiny_llama, n=6, seed=1, corruption="s2")
    assert torch.equal(t.clean, clean.clean) and t.prompts == clean.prompts
    for i in range(6):
        io, s = t.answers[i].tolist()
        differ = (t.clean[i] != t.corrupt[i]).nonzero().flatten().tolist()
        assert len(differ) == 1 and differ[0] > t.positions["IO"][i]  # one token, after both names
        assert t.clean[i, differ[0]] == s and t.corrupt[i, differ[0]] == io  # the IO name is now the repeated one
    assert t.meta["corruption"].startswith("S2 -> IO")
    with pytest.raises(ValueError, match="unknown corruption 'xyz'"):
        ioi_task(tiny_llama, n=2, corruption="xyz")
    with pytest.raises(ValueError, match="no corruption 's2'"):
        make_task("greater-than", tiny_llama, n=2, corruption="s2")
    assert torch.equal(make_task("ioi", tiny_llama, n=6, seed=1, corruption="s2").corrupt, t.corrupt)


def test_ioi_bad_names(tiny_llama):
    with pytest.raises(ValueError, match="not single tokens"):
        ioi_task(tiny_llama, n=2, names=["Mary", "John", "Ann", "Bob", "Tom"])
    with pytest.raises(ValueError, match="n must be"):
        ioi_task(tiny_llama, n=0)


def test_greater_than_metric_definition(tiny_llama):
    t = greater_than_task(tiny_llama, n=4, years=[49, 19])
    assert t.meta["exact"] and t.clean.shape == t.corrupt.shape
    assert t.prompts[0].endswith("1749 to the year 17") and "1701" in t.corrupt_prompts[0]
    logits = torch.zeros(4, t.clean.shape[1], 99)
    ids = t.data["digit_ids"][0]
    logits[:, -1, :] = -1e9
    logits[:, -1, ids[5]] = 0.0  # all mass on tens digit 5
    m = t.metric(logits)
    # allclose defaults: softmax of logits 0 / -1e9 is exactly 0 or 1
    assert torch.allclose(m, torch.tensor([1.0, 1.0, 1.0, 1.0]))  # 5 > 4 and 5 > 1
    logits[:, -1, ids[5]] = -1e9
    logits[:, -1, ids[4]] = 0.0  # tens digit 4: years 174Z <= 1749 -> counted as not greater
    # allclose defaults: softmax of logits 0 / -1e9 is exactly 0 or 1
    assert torch.allclose(t.metric(logits), torch.tensor([-1.0, 1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="02..98"):
        greater_than_task(tiny_llama, n=2, years=[1])
    with pytest.raises(ValueError, match="n must be >= 1"):
        greater_than_task(tiny_llama, n=0)


@pytest.mark.slow
def test_ioi_and_greater_than_on_smollm2(smollm2):
    t = ioi_task(smollm2, n=8)
    with torch.no_grad():
        assert t.metric(smollm2(t.clean)).mean() > t.metric(smollm2(t.corrupt)).mean() + 1.0
    s2 = ioi_task(smollm2, n=8, corruption="s2")  # the model now names the other person: LD flips sign
    with torch.no_grad():
        assert smollm2(s2.clean)[:, -1].argmax(-1).eq(s2.answers[:, 0]).float().mean() > 0.7
        assert (s2.metric(smollm2(s2.corrupt)) < 0).float().mean() > 0.7
    g = greater_than_task(smollm2, n=8)
    with torch.no_grad():
        assert g.metric(smollm2(g.clean)).mean() > 0.5 > g.metric(smollm2(g.corrupt)).mean()


def test_subset_and_metric_on_stacked_copies(tiny_llama):
    """subset keeps every per-prompt field aligned; the metric of k stacked batches of logits is the
    definition (logit(IO) - logit(S) at the last position) applied to each copy."""
    t = ioi_task(tiny_llama, n=6, seed=1)
    s = t.subset([4, 1])
    assert s.prompts == [t.prompts[4], t.prompts[1]]
    assert s.corrupt_prompts == [t.corrupt_prompts[4], t.corrupt_prompts[1]]
    for name in ("clean", "corrupt", "answers"):
        assert torch.equal(getattr(s, name), getattr(t, name)[[4, 1]])
    assert s.positions.keys() == t.positions.keys()
    assert all(torch.equal(s.positions[k], t.positions[k][[4, 1]]) for k in t.positions)
    assert t.subset(slice(1, 3)).prompts == t.prompts[1:3]
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, t.clean.shape[1], tiny_llama.cfg.d_vocab, generator=g)
    rows = torch.arange(6)
    want = logits[rows, -1, t.answers[:, 0]] - logits[rows, -1, t.answers[:, 1]]
    assert torch.equal(t.metric(logits), want)
    assert torch.equal(t.metric(torch.cat([logits, 2 * logits])), torch.cat([want, 2 * want]))
    assert torch.equal(s.metric(logits[[4, 1]]), want[[4, 1]])
