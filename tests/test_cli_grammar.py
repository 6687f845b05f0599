"""One CLI grammar (interp/cli/common.py): shared flags with one help text, defaults from the config
dataclasses, old flag spellings rejected with the new name, and each shared flag taking effect."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import re

import pytest

import interp.cli as cli_pkg
from interp.cli.common import HELP, default_of
from interp.cli.main import build_parser, main

SHARED = ("--json", "--debug", "--out", "--model", "--device", "--seed")
WRAPPERS = {("dist",)}  # runs another command's parser; has no flags of its own to share


def leaves(parser=None, path=()):
    """(command path, parser) of every runnable subcommand."""
    parser = parser or build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, sp in subs[0].choices.items():
        yield from leaves(sp, path + (name,))


def option_block(help_text: str, flag: str) -> str | None:
    """The --help lines of ``flag`` (its option line and wrapped help), whitespace-normalised,
    with the per-command ``(default: ...)`` removed."""
    lines = help_text.splitlines()
    for i, ln in enumerate(lines):
        if re.match(rf"^\s+{re.escape(flag)}(\s|,|$)", ln):
            block = [ln]
            for nxt in lines[i + 1:]:
                if not nxt.strip() or re.match(r"^\s{1,4}-", nxt) or not nxt.startswith(" "):
                    break
                block.append(nxt)
            text = " ".join(" ".join(block).split())
            return re.sub(r"\s*\(default: [^)]*\)$", "", text)
    return None


def test_shared_flags_help_identical():
    seen: dict[str, tuple[tuple, str]] = {}
    n = 0
    for path, sp in leaves():
        if path in WRAPPERS:
            continue
        n += 1
        h = sp.format_help()
        for flag in SHARED:
            block = option_block(h, flag)
            if flag in ("--json", "--debug", "--out"):
                assert block is not None, f"`interp {' '.join(path)} --help` lacks {flag}"
            if block is None:
                continue
            assert HELP[flag[2:]].split()[0] in block, (path, flag, block)
            if flag in seen:
                assert block == seen[flag][1], (f"{flag} reads differently under `interp {' '.join(path)}` "
                                                f"and `interp {' '.join(seen[flag][0])}`:\n{block}\n{seen[flag][1]}")
            else:
                seen[flag] = (path, block)
    assert n >= 19 and set(seen) == set(SHARED)


def test_defaults_shown_and_out_rule():
    """Every option with a default shows it in --help; --out: runs/... for commands that write files,
    None (then --out FILE also gets the JSON) for commands that only print."""
    prints_only = {("models",), ("store", "info"), ("store", "sinks"), ("report",)}
    for path, sp in leaves():
        if path in WRAPPERS:
            continue
        out = sp.get_default("out")
        if path in prints_only:
            assert out is None, path
        else:
            assert isinstance(out, str) and out.startswith("runs/"), (path, out)
        h = sp.format_help()
        for a in sp._actions:
            if a.option_strings and a.default not in (None, False) and a.help != argparse.SUPPRESS \
                    and not isinstance(a, argparse._HelpAction):
                assert option_block(h, a.option_strings[0]) is not None
                assert f"(default: {a.default})" in " ".join(h.split()), (path, a.option_strings[0])


def test_out_default_is_per_command_and_task():
    """Commands that write files default --out to their own folder under runs/, with <task> filled in
    by every command that takes a task: two commands (or two tasks) never write into one folder."""
    seen = {}
    for path, sp in leaves():
        out = sp.get_default("out")
        if path in WRAPPERS or out is None:
            continue
        has_task = any(a.dest == "task" and not a.option_strings for a in sp._actions)
        assert ("<task>" in out) == has_task, (path, out)
        assert out not in seen, f"`interp {' '.join(path)}` and `interp {' '.join(seen[out])}` both write to {out}"
        seen[out] = path


def test_debug_shows_the_traceback(tmp_path, capsys):
    """Without --debug an error is one line on stderr (exit 2); with it, the exception propagates."""
    missing = str(tmp_path / "missing.json")
    assert main(["report", missing]) == 2
    err = capsys.readouterr().err
    assert err.startswith("interp report: error:") and "does not exist" in err and "Traceback" not in err
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["report", missing, "--debug"])


def _config_flags():
    for info in pkgutil.iter_modules(cli_pkg.__path__):
        mod = importlib.import_module(f"interp.cli.{info.name}")
        yield from getattr(mod, "CONFIG_FLAGS", [])


def test_flags_mirroring_a_config_take_its_default():
    parsers = dict(leaves())
    checked = 0
    for path, target, mapping in _config_flags():
        mod, name = target.split(":")
        cls = getattr(importlib.import_module(mod), name)
        sp = parsers[path]
        dests = {a.dest for a in sp._actions}
        for dest, field in mapping.items():
            assert dest in dests, f"`interp {' '.join(path)}` has no flag for {dest}"
            want = default_of(cls, field)
            got = sp.get_default(dest)
            if isinstance(want, (list, tuple)) and isinstance(got, list) and len(got) == 1 and isinstance(got[0], str):
                got = tuple(int(x) for x in got[0].split(",")) if path == ("lib",) else got
            assert got == want or (isinstance(want, (list, tuple)) and list(got) == list(want)), \
                f"`interp {' '.join(path)}` {dest} defaults to {got!r}, {name}.{field} to {want!r}"
            checked += 1
    assert checked >= 60
    assert parsers[("sae", "train")].get_default("checkpoint_every") == 0


RENAMED = [
    (["cache"], "--context-length", "--seq-len"),
    (["edges", "ioi"], "--steps", "--ig-steps"),
    (["edges", "ioi"], "--share", "--gradient-share"),
    (["sinks"], "--n-seqs", "--n"),
    (["massive"], "--n-seqs", "--n"),
    (["lib"], "--n-texts", "--n"),
    (["snmf", "--layer", "0"], "--max-rows", "--n-tokens"),
    (["snmf", "--layer", "0"], "--features", "--n-features"),
    (["bigram-backcopy"], "--steps", "--train-steps"),
    (["bigram-backcopy"], "--layers", "--n-layers"),
    (["sae", "eval", "--sae", "x", "--store", "y"], "--n-seqs", "--n"),
    (["sae", "eval", "--sae", "x", "--store", "y"], "--n-rows", "--n-tokens"),
    (["sae", "dashboard", "--sae", "x", "--store", "y"], "--n-rows", "--n-tokens"),
    (["transcoder", "eval", "--sae", "x", "--store", "y"], "--n-seqs", "--n"),
    (["store", "sinks", "dir"], "--max-seqs", "--n"),
    (["sae-circuit", "ioi"], "--latents", "--d-sae"),
]


@pytest.mark.parametrize("argv,old,new", RENAMED, ids=[f"{a[0]}{o}" for a, o, _ in RENAMED])
def test_old_spelling_is_refused(argv, old, new, capsys):
    """A flag's spelling before the one-name-per-idea renames is an argparse error (no abbreviation or other
    flag takes it), never silently accepted."""
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(argv + [old, "3"])  # parse only: a wrongly accepted flag must not start a run
    assert e.value.code == 2
    assert f"unrecognized arguments: {old} 3" in capsys.readouterr().err


def test_choices_reject_unknown_values(capsys):
    for argv in (["circuit", "ioi", "--rules", "magic"], ["circuit", "ioi", "--corruption", "magic"],
                 ["edges", "ioi", "--gradient-share", "some"], ["cache", "--dtype", "int8"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "invalid" in capsys.readouterr().err


def _edges(tmp_path, seed: int, name: str) -> list[str]:
    out = tmp_path / name
    assert main(["edges", "ioi", "--model", "tiny-gpt2", "--method", "eap", "--n", "3", "--top", "1",
                 "--seed", str(seed), "--out", str(out), "--json"]) == 0
    return json.loads((out / "results.json").read_text())["prompts"]["prompts"]


def _compare(tmp_path, seed: int, name: str) -> list[str]:
    out = tmp_path / name
    assert main(["compare", "ioi", "--model", "tiny-llama", "--methods", "atp", "--components", "mlp", "--n", "3",
                 "--seed", str(seed), "--out", str(out), "--json"]) == 0
    return json.loads((out / "results.json").read_text())["prompts"]["prompts"]


@pytest.mark.parametrize("run", [_edges, _compare], ids=["edges", "compare"])
def test_seed_changes_the_prompts_drawn(tmp_path, capsys, run):
    a, b, c = run(tmp_path, 0, "a"), run(tmp_path, 0, "b"), run(tmp_path, 1, "c")
    assert a == b and a != c and len(a) == 3


def test_device_reaches_the_model(tmp_path, capsys, monkeypatch):
    # a real run: the model's parameters are where --device put them (results.json meta)
    assert main(["sinks", "--model", "tiny-llama", "--n", "1", "--seq-len", "8", "--heads", "candidates",
                 "--max-heads", "1", "--n-boot", "10", "--device", "cpu", "--out", str(tmp_path / "s"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["meta"]["device"] == "cpu"
    # an unusable device is refused by name before anything runs
    for bad, why in (("bogus", "not a torch device"), ("cuda:99", "cuda:99")):
        with pytest.raises(SystemExit):
            main(["sinks", "--model", "tiny-llama", "--device", bad])
        err = capsys.readouterr().err
        assert bad in err and why in err

    # every command that loads a model hands --device to load_model (recorded, then stopped)
    import interp.models

    seen = []

    class Stop(ValueError):
        pass

    def fake_load(name, device=None, **kw):
        seen.append(device)
        raise Stop("stopped after load_model")

    monkeypatch.setattr(interp.models, "load_model", fake_load)
    cmds = [["circuit", "ioi"], ["compare", "ioi"], ["edges", "ioi"], ["sae-circuit", "ioi"], ["snmf", "--layer", "0"],
            ["lib"], ["sinks"], ["massive"], ["cache"]]
    for argv in cmds:
        n = len(seen)
        assert main(argv + ["--model", "tiny-llama", "--device", "cpu", "--out", str(tmp_path / "x")]) == 2, argv
        assert seen[n:] == ["cpu"], argv
    capsys.readouterr()


def test_json_prints_parseable_json(tmp_path, capsys):
    store = tmp_path / "store"
    runs = [
        ["models"],
        ["cache", "--model", "tiny-llama", "--n-tokens", "64", "--seq-len", "16", "--batch-size", "2",
         "--hooks", "blocks.0.hook_resid_post", "blocks.*.attn.hook_rot_q", "blocks.*.attn.hook_rot_k",
         "--dtype", "fp32", "--no-progress", "--out", str(store)],
        ["store", "info", str(store)],
        ["store", "sinks", str(store), "--layers", "0-1"],
        ["edges", "ioi", "--model", "tiny-gpt2", "--method", "eap", "--n", "2", "--top", "2", "--out", str(tmp_path / "e")],
        ["report", str(tmp_path / "e")],
        ["compare", "ioi", "--model", "tiny-llama", "--n", "2", "--methods", "patch,atp", "--out", str(tmp_path / "c")],
        ["sae-circuit", "ioi", "--model", "tiny-llama", "--n", "2", "--epochs", "2", "--d-sae", "8", "--n-train", "2",
         "--out", str(tmp_path / "sc")],
    ]
    for argv in runs:
        assert main(argv + ["--json"]) == 0, argv
        out = capsys.readouterr().out
        assert isinstance(json.loads(out), dict), argv
    # a command that only prints writes its JSON document to --out FILE
    assert main(["store", "info", str(store), "--json", "--out", str(tmp_path / "info.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "info.json").read_text()) == json.loads(json.dumps(printed))


def test_parse_layers_forms_and_errors():
    """--layers: lists, ranges and space-separated values give the same sorted layers; a reversed range, a
    non-number, a double range and nothing at all are errors naming the flag."""
    from interp.cli.common import parse_layers

    assert parse_layers("3,4,5") == parse_layers("3-5") == parse_layers(["3", "4", "5"]) == (3, 4, 5)
    assert parse_layers(["4-5", "3,4"]) == (3, 4, 5) and parse_layers("0") == (0,)
    for bad in ("5-3", "x", "3-5-7", "", ","):
        with pytest.raises(ValueError, match="--layers"):
            parse_layers(bad)


def test_only_rank_0_writes_a_result(tmp_path, monkeypatch, capsys):
    """Under torchrun (RANK / WORLD_SIZE in the environment: interp.parallel.dist_env) every rank holds the
    same result; write_result writes results.json + report.html and prints on rank 0 only."""
    from dataclasses import dataclass

    from interp.cli.common import write_result
    from interp.reports import Report
    from interp.results import Result

    @dataclass
    class Tiny(Result):  # not registered: a throwaway kind for the writer alone
        kind = "rank-test"
        x: int = 1

        def summary(self) -> str:
            return f"x is {self.x}"

        def report(self):
            return Report("tiny", summary=self.summary())

    args = argparse.Namespace(out=str(tmp_path / "r"), json=False, _out_is_json=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert write_result(args, Tiny()) == 0
    assert not (tmp_path / "r").exists() and capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    assert write_result(args, Tiny()) == 0
    assert json.loads((tmp_path / "r" / "results.json").read_text())["x"] == 1
    assert (tmp_path / "r" / "report.html").exists()
    assert capsys.readouterr().out.startswith("x is 1")


def test_module_entry_point_prints_user_errors_without_traceback():
    """``python -m interp.cli.main`` (the torchrun entry point) runs as ``__main__``; the commands raise the
    UserError of ``interp.cli.main``, which main() must catch: a one-line error and exit status 2."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "interp.cli.main", "dist", "foo"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("interp dist: error: `interp dist` runs one of")


def test_out_file_holds_what_json_prints_for_values_json_lacks(tmp_path, capsys):
    """A print-only command's payload may hold values JSON has no type for (a Path, a dtype): --json prints
    their str(), and --out FILE must hold the same document, not fail after the run."""
    from pathlib import Path

    import torch

    from interp.cli.common import emit

    out = tmp_path / "doc.json"
    args = argparse.Namespace(_out_is_json=True, out=str(out), json=True)
    assert emit(args, {"store": Path("runs/store"), "dtype": torch.float16}, "human") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"store": "runs/store", "dtype": "torch.float16"} == json.loads(out.read_text())


def test_print_only_command_writes_its_json_document_to_out(tmp_path, capsys):
    """`interp models` prints a plain JSON document (not a typed result); --out FILE receives the same one."""
    assert main(["models", "--json", "--out", str(tmp_path / "m" / "models.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "m" / "models.json").read_text()) == printed and printed["models"]
