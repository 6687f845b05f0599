"""The import direction of docs/architecture.md: no module imports from a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "interp"
LAYERS = {  # package (first component under interp/) -> layer; keep in step with docs/architecture.md
    "results": 0, "fastpath": 0,
    "models": 1,
    "reports": 2,
    "store": 3,
    "tasks": 4,
    "attribution": 5, "dictionaries": 5, "decompositions": 5, "phenomena": 5, "toy": 5,
    "circuits": 6, "steering": 6, "parallel": 6,
    "cli": 7, "__init__": 7,  # the package root re-exports the public API: nothing may import it
}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported interp package) for every import in ``path``, function-level ones included."""
    rel = path.relative_to(ROOT.parent).with_suffix("").parts  # ("interp", pkg, ...)
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel[:-1] if path.name != "__init__.py" else rel[:-1])[: len(rel) - node.level]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [mod] if mod != "interp" else [  # `from interp import load_model` imports the root
                f"interp.{a.name}" if (ROOT / a.name).is_dir() or a.name == "results" else "interp" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for m in names:
            q = m.split(".")
            if q[0] == "interp":
                out.append((node.lineno, q[1] if len(q) > 1 else "__init__"))
    return out


def package_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return parts[0] if len(parts) > 1 else parts[0]


def violations() -> list[str]:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        own = package_of(path)
        if own not in LAYERS:
            bad.append(f"{path}: package {own!r} has no layer in docs/architecture.md")
            continue
        for line, target in imports(path):
            if target in LAYERS and LAYERS[target] > LAYERS[own]:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {own} (layer {LAYERS[own]}) imports "
                           f"{target} (layer {LAYERS[target]})")
    return bad


def test_no_module_imports_from_a_layer_above():
    assert not violations(), "\n".join(violations())


def test_the_check_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    """A planted upward import (inside a function, relative form) is caught."""
    pkg = tmp_path / "interp"
    (pkg / "models").mkdir(parents=True)
    (pkg / "circuits").mkdir()
    (pkg / "models" / "bad.py").write_text("def f():\n    from ..circuits import run_circuit\n")
    (pkg / "circuits" / "ok.py").write_text("from interp.models import load_model\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", pkg)
    found = violations()
    assert len(found) == 1 and "models/bad.py:2: models (layer 1) imports circuits (layer 6)" in found[0], found


def test_every_package_has_a_documented_layer():
    doc = (ROOT.parent / "docs" / "architecture.md").read_text()
    for pkg in LAYERS:
        if pkg != "__init__":
            assert f"`interp.{pkg}`" in doc, f"interp.{pkg} is missing from docs/architecture.md"
