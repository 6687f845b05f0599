"""Typed results: one serialisation, one dispatch, one notebook display for every analysis.

An analysis returns a dataclass that subclasses :class:`Result`.  Each result type declares

* ``kind`` (a class attribute): the name written into ``results.json`` and used by
  ``interp report`` / :func:`load_result` to pick the type back;
* ``schema_version`` (a class attribute, an int): raised when a field changes meaning; a file
  with a newer version than this code knows is refused with a clear error, never half-read;
* ``summary()``: one or two sentences written from the numbers (the finding first);
* ``report()``: a :class:`interp.reports.Report` that opens with that summary, then the figures
  that carry the finding, then method and provenance.

``to_json()`` writes every dataclass field: tensors become ``{"__tensor__": dtype, "shape": [...],
"data": [...]}`` (plain JSON numbers; NaN and inf as strings), nested dataclasses and dicts
recurse.  ``from_json()`` is the inverse and checks ``kind`` and ``schema_version``.  Nothing is
unpickled: JSON in, tensors rebuilt with ``torch.tensor``.  In Jupyter a cell that ends with a
result shows its summary and figures (``_repr_html_``; plotly.js inlined once per notebook
session, so the figures survive an HTML export and open offline).

Memory: a result holds what its fields hold; JSON text is about 10-20 bytes per float.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import platform
import types
import typing
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import torch

from interp.config import field_default

#: kind -> result class; filled by :func:`register`.
KINDS: dict[str, type["Result"]] = {}
#: Modules that define result kinds (imported by :func:`load_result` so every kind is known).
KIND_MODULES = (
    "interp.attribution.components",
    "interp.circuits.result",
    "interp.circuits.compare",
    "interp.circuits.edge_circuits",
    "interp.circuits.sae_circuits",
    "interp.steering.evaluate",
    "interp.phenomena.sinks",
    "interp.phenomena.dormant",
    "interp.phenomena.massive",
    "interp.toy.bigram_backcopy",
    "interp.dictionaries.results",
    "interp.dictionaries.dashboards",
    "interp.decompositions.results",
    "interp.store.summary",
)


class ResultSchemaError(ValueError):
    """A results file this code cannot read: unknown kind, newer schema, or malformed fields."""


def register(cls):
    """Class decorator: make ``cls`` loadable by its ``kind`` (a duplicate kind is an error)."""
    if not getattr(cls, "kind", None):
        raise TypeError(f"{cls.__name__} must set a class attribute `kind`")
    if cls.kind in KINDS and KINDS[cls.kind] is not cls:
        raise TypeError(f"result kind {cls.kind!r} is registered twice ({KINDS[cls.kind].__name__}, {cls.__name__})")
    KINDS[cls.kind] = cls
    return cls


def encode(v: Any) -> Any:
    """A JSON-safe form of ``v`` (tensors, numpy arrays, results, dataclasses, tuples, non-finite floats)."""
    if isinstance(v, Result):
        return v.to_json()
    if isinstance(v, torch.Tensor):
        t = v.detach().cpu()
        data = t.reshape(-1).tolist()
        if t.is_floating_point():
            data = [x if math.isfinite(x) else str(x) for x in data]
        return {"__tensor__": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "data": data}
    if hasattr(v, "__array__"):
        return encode(torch.as_tensor(v.__array__()))
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: encode(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {str(k): encode(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [encode(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def decode(v: Any) -> Any:
    """Inverse of :func:`encode` for tensors (dataclass fields are rebuilt by ``from_json``)."""
    if isinstance(v, dict):
        if "__tensor__" in v:
            dtype = getattr(torch, v["__tensor__"], None)
            if not isinstance(dtype, torch.dtype):
                raise ResultSchemaError(f"unknown tensor dtype {v['__tensor__']!r}")
            data = [float(x) if isinstance(x, str) else x for x in v["data"]]
            return torch.tensor(data, dtype=dtype).reshape(v["shape"])
        return {k: decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [decode(x) for x in v]
    return v


def typed(value: Any, tp: Any) -> Any:
    """``value`` (decoded JSON) rebuilt as the annotated type ``tp``: dataclasses (a :class:`Result`
    through its ``from_json``), ``X | None``, ``list`` / ``tuple`` / ``dict`` of them; a float written
    as a string (``"nan"``) back to a float; anything else as it is."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return typed(value, inner[0]) if len(inner) == 1 else value
    if isinstance(tp, type) and issubclass(tp, Result) and isinstance(value, dict):
        return tp.from_json(value)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):  # keys of fields since removed are dropped,
        hints = typing.get_type_hints(tp)                            # as Result.from_json drops them
        names = {f.name for f in dataclasses.fields(tp)}
        return tp(**{k: typed(v, hints.get(k, Any)) for k, v in value.items() if k in names})
    if origin in (list, tuple) and isinstance(value, list):
        if origin is list or args[1:] == (Ellipsis,):
            args = args[:1] * len(value)
        items = [typed(v, t) for v, t in zip(value, args)] if len(args) == len(value) else value
        return tuple(items) if origin is tuple else items
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {k: typed(v, args[1]) for k, v in value.items()}
    if tp is float and isinstance(value, str):
        return float(value)
    return value


class Result:
    """Base of every typed analysis result (subclasses are dataclasses)."""

    kind: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1
    #: What each plotted quantity is, as its axis must be titled: field path -> axis title.  A path
    #: is a dotted field name (``"curve.sizes"``); ``"#d"`` names dimension ``d`` of a tensor field
    #: (``"scores.attn_head#0"``: the layer index of a layer x head matrix) or the ``d``-th level of
    #: keys of a nested dict (``"seconds#0"``: the method names of ``{method: seconds}``); ``"*"``
    #: stands for every key of a dict or every record of a list (``"methods.*.points.kl"``).  A report figure records
    #: the paths its axes show (``Report.add_*(..., fields=(x, y))``); the browser test checks each
    #: drawn axis title against this table, so a figure of a list index is never labelled "layer".
    axes: ClassVar[dict[str, str]] = {}

    # ------------------------------------------------------------------ serialisation
    def to_json(self) -> dict:
        """Every field, JSON-safe, under ``kind`` and ``schema_version``."""
        out = {"kind": self.kind, "schema_version": self.schema_version}
        out.update({f.name: encode(getattr(self, f.name)) for f in dataclasses.fields(self)})
        return out

    @classmethod
    def from_json(cls, data: dict):
        """Rebuild from :meth:`to_json` output (checks ``kind`` and ``schema_version``)."""
        check_header(data, cls)
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in data and field_default(f) is dataclasses.MISSING]
        if missing:
            raise ResultSchemaError(f"{cls.kind} results lack field(s) {missing}")
        hints = typing.get_type_hints(cls)
        return cls(**{k: typed(decode(v), hints.get(k, Any)) for k, v in data.items() if k in names})

    def save(self, path: str | Path) -> Path:
        """Write ``to_json()`` to ``path`` (a ``results.json``; :func:`write_json`)."""
        return write_json(self.to_json(), path)

    def write(self, folder: str | Path) -> tuple[Path, Path]:
        """The one results writer: ``folder/results.json`` (:meth:`save`) and ``folder/report.html``
        (:meth:`report`); returns both paths."""
        folder = Path(folder)
        rj = self.save(folder / "results.json")
        return rj, self.report().write(folder / "report.html")

    # ------------------------------------------------------------------ reading
    def summary(self) -> str:
        """The finding in a sentence or two, written from the numbers."""
        raise NotImplementedError(f"{type(self).__name__} has no summary")

    def report(self):
        """An :class:`interp.reports.Report` that leads with :meth:`summary`."""
        raise NotImplementedError(f"{type(self).__name__} has no report")

    def _repr_html_(self) -> str:
        return self.report().fragment_html()


def write_json(doc: dict, path: str | Path) -> Path:
    """Write the JSON document ``doc`` to ``path`` (parent folders are created) and return the path: the one
    JSON file writer (:meth:`Result.save`, ``--out FILE`` of the commands that only print)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")  # per process: ranks may write the same folder
    tmp.write_text(json.dumps(doc, indent=1, default=str))  # as emit prints it: str() of what JSON lacks
    tmp.replace(p)  # never a half-written file
    return p


def check_header(data: Any, cls: type[Result] | None = None) -> type[Result]:
    """The result class for ``data``'s ``kind``; a clear error for anything else."""
    if not isinstance(data, dict):
        raise ResultSchemaError(f"results must be a JSON object, got {type(data).__name__}")
    kind = data.get("kind")
    if cls is not None and kind != cls.kind:
        raise ResultSchemaError(f"expected results of kind {cls.kind!r}, got {kind!r}")
    target = cls or (known_kinds().get(kind) if isinstance(kind, str) else None)
    if target is None:
        raise ResultSchemaError(f"unknown results kind {kind!r}; known kinds: {', '.join(sorted(KINDS)) or 'none'}")
    version = data.get("schema_version")
    if not isinstance(version, int):
        raise ResultSchemaError(f"{kind} results have no integer schema_version (got {version!r})")
    if version > target.schema_version:
        raise ResultSchemaError(f"{kind} results have schema_version {version}, newer than this interp reads "
                                f"({target.schema_version}): upgrade interp to read them")
    return target


def known_kinds() -> dict[str, type[Result]]:
    """Every registered result kind (imports the modules that define them)."""
    for module in KIND_MODULES:
        importlib.import_module(module)
    return KINDS


def read_results(source: str | Path | dict) -> dict:
    """A ``results.json`` (a folder means its ``results.json``) or its parsed dict, as a dict; a clear
    ``FileNotFoundError`` / ``ValueError`` naming the file when it is missing, empty, not UTF-8, not JSON
    or not a JSON object."""
    if isinstance(source, dict):
        return source
    p = Path(source) / "results.json" if Path(source).is_dir() else Path(source)
    if not p.exists():
        raise FileNotFoundError(f"results file {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{p} is not UTF-8 text (byte {e.start}); expected a results.json") from None
    if not text.strip():
        raise ValueError(f"{p} is empty; expected a JSON object")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{p} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except RecursionError:
        raise ValueError(f"{p}: JSON nested too deeply to read") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a JSON object at the top level (with a \"kind\" field such as "
                         f"\"circuit\"), got a JSON {type(data).__name__}")
    return data


def load_result(source: str | Path | dict) -> Result:
    """A typed result from a ``results.json`` path (or its folder) or its parsed dict (dispatch on
    ``kind``)."""
    data = read_results(source)
    return check_header(data).from_json(data)


# ---------------------------------------------------------------------------------- shared checks
def check_fields(cfg: Any, choices: dict[str, Any] | None = None, at_least: dict[str, float] | None = None) -> None:
    """The one check of a config dataclass's fields: a ``ValueError`` naming the first field whose value
    is not among its ``choices`` or lies below its ``at_least`` bound (``None`` values pass the bound)."""
    name = type(cfg).__name__
    for k, options in (choices or {}).items():
        if getattr(cfg, k) not in options:
            raise ValueError(f"unknown {k} {getattr(cfg, k)!r} ({name}.{k}); choose from {tuple(options)}")
    for k, low in (at_least or {}).items():
        if getattr(cfg, k) is not None and getattr(cfg, k) < low:
            raise ValueError(f"{name}.{k} must be >= {low}, got {getattr(cfg, k)}")


# ---------------------------------------------------------------------------------- shared numbers
def pearson(a, b) -> float:
    """Pearson correlation of two flattened score arrays, in float64 (nan when either is constant;
    :func:`pearson_or_reason` says why).  The one Pearson of the project."""
    a, b = torch.as_tensor(a).reshape(-1).double(), torch.as_tensor(b).reshape(-1).double()
    if a.shape != b.shape:
        raise ValueError(f"pearson: {a.numel()} values vs {b.numel()} values")
    a, b = a - a.mean(), b - b.mean()
    den = a.norm() * b.norm()
    return float((a * b).sum() / den) if den > 0 else float("nan")


def pearson_or_reason(scores, truth, name: str = "method",
                      truth_name: str = "patching") -> tuple[float | None, str | None]:
    """``(r, None)``, or ``(None, reason)`` where r is undefined: too few, non-finite scores, or a
    constant vector ("constant: all <name> scores equal 0.0", which is how a method that silently
    returns zeros shows up).  Never nan."""
    for v, who in ((scores, name), (truth, truth_name)):
        v = torch.as_tensor(v).reshape(-1).double()
        if v.numel() < 2:
            return None, f"only {v.numel()} {who} score(s)"
        bad = int((~torch.isfinite(v)).sum())
        if bad:
            return None, f"non-finite: {bad} of {v.numel()} {who} scores are nan/inf"
        if bool((v == v[0]).all()):
            return None, f"constant: all {v.numel()} {who} scores equal {v[0].item():.6g}"
    return pearson(scores, truth), None


def versions() -> dict:
    """What produced a result: Python, torch and the packages interp's numbers depend on, the machine
    and torch's thread count (float results differ at rounding scale between CPUs and thread counts).
    The one ``versions()`` of the project; every result and report records it."""
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("interp", "transformer-lens", "transformers", "captum", "numpy", "plotly"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    out["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
    out["threads"] = torch.get_num_threads()
    return out
