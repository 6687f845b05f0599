"""One way to configure (issue 14, item 4): no function in interp/ takes more than eight parameters
(more go into a config dataclass), and every entry point decorated with ``takes_config`` takes
exactly its config's fields as keywords, or ``config=``, never both."""

import ast
import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest

from interp.config import takes_config

ROOT = Path(__file__).resolve().parent.parent / "interp"
MAX_PARAMS = 8
ALLOWED: set[str] = set()  # "path:function" over MAX_PARAMS, each with a comment saying why (none today)


def too_many(root: Path = ROOT) -> list[str]:
    """``path:line function (n)`` for every function (methods and nested ones included) with more than
    MAX_PARAMS parameters; ``self`` / ``cls`` do not count, ``*args`` / ``**kw`` do."""
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
                n = len(names) + bool(a.vararg) + bool(a.kwarg)
                where = f"{path.relative_to(root.parent)}:{node.name}"
                if n > MAX_PARAMS and where not in ALLOWED:
                    out.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({n} parameters)")
    return out


def decorated(root: Path = ROOT) -> list[tuple[str, str]]:
    """``(module, qualified name)`` of every function decorated with ``@takes_config(...)``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        mod = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        tree = ast.parse(path.read_text())
        for cls in [None] + [n for n in tree.body if isinstance(n, ast.ClassDef)]:
            for node in (tree.body if cls is None else cls.body):
                if isinstance(node, ast.FunctionDef) and any(
                        isinstance(d, ast.Call) and ast.unparse(d.func).endswith("takes_config")
                        for d in node.decorator_list):
                    out.append((mod, node.name if cls is None else f"{cls.name}.{node.name}"))
    return out


def test_no_function_takes_more_than_eight_parameters():
    bad = too_many()
    assert not bad, "more than 8 parameters (take a config dataclass, see interp/config.py):\n" + "\n".join(bad)


def test_the_scan_finds_a_long_signature(tmp_path):
    """The scan itself: a method with 9 parameters besides self is found, one with 8 is not."""
    pkg = tmp_path / "interp"
    pkg.mkdir()
    (pkg / "m.py").write_text("class A:\n    def f(self, a, b, c, d, e, f, g, *h, **i): ...\n"
                              "    def g(self, a, b, c, d, e, f, g, *, h): ...\n")
    assert too_many(pkg) == ["interp/m.py:2 f (9 parameters)"]


ENTRY_POINTS = decorated()


def _resolve(mod: str, qual: str):
    obj = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def test_the_entry_points_are_found():
    names = {q for _, q in ENTRY_POINTS}
    assert {"activation_patching", "run_circuit", "compare_methods", "ActivationStore.batches", "grains",
            "feature_vector", "feature_dashboard"} <= names, names


@pytest.mark.parametrize("mod,qual", ENTRY_POINTS, ids=[f"{m}:{q}" for m, q in ENTRY_POINTS])
def test_keywords_are_the_config_fields(mod, qual):
    """The keyword-only parameters the decorator adds are the config's fields, same names, defaults and
    order; config= with any one of them, or a config of another class, is a TypeError before any work
    (the wrapper raises before it calls the function, so no arguments are needed)."""
    fn = _resolve(mod, qual)
    cls = fn.__config__
    own = inspect.signature(inspect.unwrap(fn)).parameters
    added = [(p.name, p.default) for p in inspect.signature(fn).parameters.values()
             if p.kind is p.KEYWORD_ONLY and p.name != "config" and p.name not in own]
    fields = dataclasses.fields(cls)
    defaults = [f.default if f.default is not dataclasses.MISSING else f.default_factory() for f in fields]
    assert added == list(zip([f.name for f in fields], defaults))
    assert not {f.name for f in fields} & set(own), "a parameter of the function shadows a config field"
    for f, default in zip(fields, defaults):
        with pytest.raises(TypeError, match=f"either config=.*{f.name}.*not both"):
            fn(config=cls(), **{f.name: default})
    with pytest.raises(TypeError, match=f"config must be a {cls.__name__}"):
        fn(config=object())


def test_takes_config_refuses_a_function_it_would_misconfigure():
    @dataclasses.dataclass
    class C:
        steps: int = 1

    with pytest.raises(TypeError, match=r"parameters \['steps'\] are fields of C"):  # steps= would never arrive
        takes_config(C)(lambda x, steps=2, *, config: None)
    with pytest.raises(TypeError, match="must take `config`"):
        takes_config(C)(lambda x, steps=2: None)
    with pytest.raises(TypeError, match="takes \\*\\*kwargs"):  # a misspelt setting would vanish into **kw
        takes_config(C)(lambda x, *, config, **kw: None)

    @takes_config(C)
    def f(x, config=None):  # the config may also be the last positional parameter
        return x, config

    assert f(1) == (1, C()) and f(1, C(3)) == (1, C(3)) == f(1, steps=3) == f(1, config=C(3))
    with pytest.raises(TypeError, match="not both"):
        f(1, C(3), steps=3)
