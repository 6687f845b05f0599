"""``render_results``: a ``results.json`` -> a :class:`Report`.

A typed result kind (:mod:`interp.results`: attribution, circuit, compare, steering_comparison,
and every kind listed in ``KIND_MODULES``) renders with its own ``report()``; an unknown kind, a
newer schema or a file of a typed kind without ``schema_version`` is a clear error.

Legacy path, for results dicts of the kinds not yet typed (``LEGACY_KINDS``); any other kind, or none, is an error.  Each such kind's renderer claims the
keys it understands and the generic renderer shows the rest (scalars -> a table, 1-D arrays -> bars or lines, 2-D ->
heatmaps, 3-D -> one heatmap per leading index, lists of records -> tables or token views, nested
dicts -> sub-sections).  This path goes once every kind is typed (issue 15).

Malformed JSON, a top level that is not an object, and a file with nothing to show raise
``ValueError`` naming the problem.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from interp.reports import figures as F
from interp.reports.report import Report

#: Keys shown in the Run section rather than as data.
META_KEYS = ("model", "task", "versions", "timings", "created", "host")
RESERVED = ("kind", "title", "config", "meta", "model", "versions", "created", "host")
X_KEYS = ("step", "steps", "epoch", "epochs", "iteration", "iterations", "n_tokens", "tokens_seen",
          "n_components", "layer", "layers", "x")
MAX_PLOT_ELEMENTS = 250_000
MAX_SLICES = 4
MAX_DEPTH = 6
MAX_TOKEN_VIEWS = 20


class Hints(dict):
    """Axis names for the generic renderer: ``x1`` (1-D x axis), ``x2``/``y2`` (2-D columns/rows),
    ``x3``/``y3`` (columns/rows of each slice of a 3-D array); ``prefix_*`` label prefixes;
    ``log1``: draw positive 1-D series spanning three orders of magnitude on a log axis."""


def load_results(results: dict | str | Path) -> tuple[dict, str]:
    """The results as a dict, and a name for messages.  Clear ``ValueError`` on bad input."""
    if isinstance(results, dict):
        data, src = results, "results"
    elif isinstance(results, (str, Path)):
        p = Path(results)
        if p.is_dir():
            p = p / "results.json"
        if not p.exists():
            raise FileNotFoundError(f"results file {p} does not exist")
        src = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{src} is not UTF-8 text (byte {e.start}); expected a results.json") from None
        if not text.strip():
            raise ValueError(f"{src} is empty; expected a JSON object")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{src} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
        except RecursionError:
            raise ValueError(f"{src}: JSON nested too deeply to read") from None
    else:
        raise ValueError(f"render_results expects a dict or a path to a results.json, got {type(results).__name__}")
    if not isinstance(data, dict):
        raise ValueError(f"{src}: expected a JSON object at the top level (with a \"kind\" field such as "
                         f"\"circuit\"), got a JSON {type(data).__name__}")
    return data, src


def render_results(results: dict | str | Path, title: str | None = None) -> Report:
    """Turn a results dict or ``results.json`` path into a :class:`Report` (see the module docstring).

    A typed result kind (:mod:`interp.results`) renders with its own ``report()``; its errors
    (no or newer schema, missing fields) are raised as they are."""
    from interp.results import ResultSchemaError, known_kinds, load_result

    data, src = load_results(results)
    kind = data.get("kind")
    if isinstance(kind, str) and kind in known_kinds():
        rep = load_result(data).report()  # already read above: no second parse of the file
        rep.title = title or rep.title
        return rep
    if not isinstance(kind, str) or kind not in LEGACY_KINDS:
        raise ResultSchemaError(f"{src}: unknown results kind {kind!r:.60}; known kinds: "
                                f"{', '.join(sorted(set(known_kinds()) | LEGACY_KINDS))}")
    config = data.get("config")
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"{src}: \"config\" must be an object, got {type(config).__name__}")
    meta = data.get("meta") or {}
    if not isinstance(meta, dict):
        raise ValueError(f"{src}: \"meta\" must be an object, got {type(meta).__name__}")
    meta = dict(meta)
    for k in META_KEYS:
        if k in data and k not in meta:
            meta[k] = data[k]
    if "seconds" in data and not isinstance(data["seconds"], dict) and "timings" not in meta:
        meta["timings"] = {"total": data["seconds"]}
    heading = title or data.get("title") or _default_title(kind, data)
    r = Report(str(heading), config=config, meta=meta)
    renderer = KINDS.get(kind)
    rest = {k: v for k, v in data.items() if k not in RESERVED and not (k == "task" and isinstance(v, str))}
    hints = Hints()
    if renderer is not None:
        claimed, hints = renderer(r, rest, data)
        rest = {k: v for k, v in rest.items() if k not in claimed}
    render_generic(r, rest, hints)
    if _n_content(r) == 0:
        keys = ", ".join(sorted(data)) or "none"
        raise ValueError(f"{src}: nothing to render: no numbers, arrays, tables or known fields "
                         f"(top-level keys: {keys})")
    return r


def _n_content(r: Report) -> int:
    return sum(s.kind in ("figure", "table", "tokens") for s in r.sections)


def _default_title(kind: str | None, data: dict) -> str:
    name = {"sinks": "Attention sinks", "massive": "Massive activations", "sae": "Sparse autoencoder",
            "store": "Activation store"}
    title = name.get(kind or "", f"Results ({kind})" if kind else "Results")
    if isinstance(data.get("task"), str):
        title += f": {data['task']}"
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    model = data.get("model") or meta.get("model")
    return title + (f" on {model}" if isinstance(model, str) else "")


# ---------------------------------------------------------------------------------- generic

def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _numeric_leaves(v: Any) -> bool:
    """True when ``v`` is a (possibly nested, possibly ragged) list of numbers/None with a number in it."""
    found = False
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, bool) or (x is not None and not isinstance(x, (int, float))):
            return False
        elif x is not None:
            found = True
    return found and isinstance(v, list)


def _title(path: tuple[str, ...]) -> str:
    return " › ".join(path) if path else "results"


def render_generic(r: Report, data: dict, hints: Hints | None = None, path: tuple[str, ...] = ()) -> None:
    """Render every field of ``data`` (see the module docstring for the mapping)."""
    hints = hints or Hints()
    if len(path) >= MAX_DEPTH:          # deeper structure: one table of compact JSON values
        r.add_table(_title(path), [{"field": k, "value": v} for k, v in data.items()],
                    caption=f"{_title(path)} is nested more than {MAX_DEPTH} levels deep; shown as JSON.")
        return
    scalars = {k: v for k, v in data.items() if _is_scalar(v) or (isinstance(v, (list, dict)) and not v)}
    if scalars:
        rows = [{"field": k, "value": ("(empty)" if isinstance(v, (list, dict)) else v)} for k, v in scalars.items()]
        r.add_table(_title(path) + " (values)" if path else "Summary", rows,
                    caption=f"{len(rows)} scalar field{'s' if len(rows) != 1 else ''} of {_title(path)}.")
    xkey = next((k for k in X_KEYS if isinstance(data.get(k), list) and _numeric_leaves(data[k])
                 and not any(isinstance(e, list) for e in data[k])), None)
    xs = data[xkey] if xkey else None
    for k, v in data.items():
        if k in scalars or k == xkey and any(_same_len_series(v2, len(xs)) for k2, v2 in data.items() if k2 != xkey):
            continue
        sub = path + (str(k),)
        if not path and isinstance(v, (dict, list)) and not (isinstance(v, list) and _numeric_leaves(v)):
            r.add_section(str(k))
        if isinstance(v, dict):
            render_generic(r, v, hints, sub)
        elif isinstance(v, list) and _numeric_leaves(v):
            _render_array(r, sub, v, hints, xs if xkey and _same_len_series(v, len(xs)) else None, xkey)
        elif isinstance(v, list):
            _render_list(r, sub, v, hints)


def _same_len_series(v: Any, n: int) -> bool:
    return isinstance(v, list) and len(v) == n and _numeric_leaves(v) and all(not isinstance(x, list) for x in v)


def _render_array(r: Report, path: tuple[str, ...], v: list, hints: Hints, xs: list | None = None,
                  xkey: str | None = None) -> None:
    title = _title(path)
    try:
        arr = F.as_array(v, title)
    except ValueError:
        rows = [{"row": i, "length": len(x) if isinstance(x, list) else 1, "values": x} for i, x in enumerate(v)]
        r.add_table(title, rows, caption=f"{title} is a ragged array (rows of different lengths), shown as a table.")
        return
    if arr.size > MAX_PLOT_ELEMENTS or arr.ndim > 3:
        fin = arr[np.isfinite(arr)]
        stats = {"shape": list(arr.shape), "min": float(fin.min()) if fin.size else math.nan,
                 "max": float(fin.max()) if fin.size else math.nan, "mean": float(fin.mean()) if fin.size else math.nan,
                 "non-finite": int(arr.size - fin.size)}
        why = "too many values to plot" if arr.size > MAX_PLOT_ELEMENTS else f"{arr.ndim}-D"
        r.add_table(title, stats, caption=f"{title} ({why}); summary statistics only.")
        return
    if arr.ndim == 0 or arr.size == 1:
        r.add_table(title, [{"field": title, "value": float(arr.ravel()[0])}])
        return
    if arr.ndim == 1:
        positive = np.isfinite(arr) & (arr > 0)
        fin = arr[np.isfinite(arr)]
        log_y = bool(hints.get("log1") and fin.size > 1 and positive.sum() == fin.size
                     and fin.max() / fin.min() > 1e3)
        if xs is not None:
            r.add_line(title, xs, {path[-1]: arr}, x_title=xkey or "", y_title=path[-1], log_y=log_y)
        elif len(arr) <= 60 and not log_y:
            labels = [f"{hints.get('prefix1', '')}{i}" for i in range(len(arr))]
            r.add_bars(title, labels, {"": arr}, x_title=hints.get("x1", "index"), y_title=path[-1])
        else:
            r.add_line(title, list(range(len(arr))), {path[-1]: arr}, x_title=hints.get("x1", "index"),
                       y_title=path[-1], log_y=log_y)
        return
    slices = [(title, arr)] if arr.ndim == 2 else [(f"{title} [{i}]", arr[i]) for i in range(min(MAX_SLICES, arr.shape[0]))]
    if arr.ndim == 3:
        r.add_text(f"`{title}` has shape {tuple(arr.shape)}: one heatmap per leading index"
                   + (f", the first {MAX_SLICES} of {arr.shape[0]}." if arr.shape[0] > MAX_SLICES else "."))
    d = "2" if arr.ndim == 2 else "3"        # a slice of a 3-D array has its own axis names
    y_p, x_p = hints.get(f"prefix_y{d}", ""), hints.get(f"prefix_x{d}", "")
    for t, z in slices:
        r.add_heatmap(t, z, [f"{x_p}{i}" for i in range(z.shape[1])], [f"{y_p}{i}" for i in range(z.shape[0])],
                      x_title=hints.get(f"x{d}", "column"), y_title=hints.get(f"y{d}", "row"))


def _numeric_records(v: list) -> dict | None:
    """A log such as ``[{"step": 0, "loss": 1.2}, ...]`` as columns, when it has an x key and numbers only."""
    if len(v) < 2 or not all(isinstance(x, dict) and x for x in v):
        return None
    keys = list(v[0])
    if any(list(x) != keys for x in v) or not any(k in X_KEYS for k in keys):
        return None
    if not all(x[k] is None or (isinstance(x[k], (int, float)) and not isinstance(x[k], bool)) for x in v for k in keys):
        return None
    return {k: [x[k] for x in v] for k in keys}


def _render_list(r: Report, path: tuple[str, ...], v: list, hints: Hints) -> None:
    title = _title(path)
    cols = _numeric_records(v)
    if cols is not None:                 # a training log: one curve per column against the x key
        render_generic(r, cols, hints, path)
        return
    if all(isinstance(x, dict) for x in v):
        tok = [x for x in v if isinstance(x.get("tokens"), list) and "scores" in x]
        if tok and len(tok) == len(v):
            if len(v) > MAX_TOKEN_VIEWS:
                r.add_text(f"`{title}` holds {len(v)} examples; the first {MAX_TOKEN_VIEWS} are shown.")
            for i, ex in enumerate(v[:MAX_TOKEN_VIEWS]):
                name = str(ex.get("title") or ex.get("name") or ex.get("prompt") or f"example {i}")[:80]
                if isinstance(ex["scores"], dict):           # one view per method
                    for method, sc in ex["scores"].items():
                        r.add_token_attributions(f"{title}: {name} ({method})", ex["tokens"], sc)
                else:
                    r.add_token_attributions(f"{title}: {name}", ex["tokens"], ex["scores"])
            rest = [{k: x for k, x in ex.items() if k not in ("tokens", "scores", "title", "name")} for ex in v]
            if any(rest):
                r.add_table(f"{title} (fields)", rest)
            return
        r.add_table(title, v)
        return
    if all(_is_scalar(x) for x in v):
        r.add_table(title, [{"#": i, "value": x} for i, x in enumerate(v)], caption=f"{len(v)} entries of {title}.")
        return
    r.add_table(title, [{"#": i, "value": x} for i, x in enumerate(v)], caption=f"{title}: a mixed list, shown as a table.")


# ---------------------------------------------------------------------------------- kinds

Renderer = Callable[[Report, dict, dict], tuple[set, Hints]]
"""(report, unclaimed fields, whole results) -> (fields it rendered, axis hints for the rest)."""


def _render_sae(r: Report, data: dict, full: dict | None = None) -> tuple[set, Hints]:
    return set(), Hints(x1="index", x2="column", y2="row")


def _count(x: Any) -> int:
    return int(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else 0


def _files(shard: Any) -> dict:
    f = shard.get("files") if isinstance(shard, dict) else None
    return f if isinstance(f, dict) else {}


def _render_store(r: Report, data: dict, full: dict | None = None) -> tuple[set, Hints]:
    """The store manifest: one row per hook (shape, rows, bytes) and one row per shard.

    Fields that do not look like a manifest's (hooks not strings, shards not objects) are left to
    the generic renderer.
    """
    claimed: set = set()
    shapes = data.get("row_shapes", data.get("shapes"))
    shapes = shapes if isinstance(shapes, dict) else {}
    shards = data.get("shards") if isinstance(data.get("shards"), list) else []
    shards_ok = bool(shards) and all(isinstance(sh, dict) for sh in shards)
    hooks = data.get("hooks") if isinstance(data.get("hooks"), list) else list(shapes)
    if hooks and all(isinstance(h, str) for h in hooks):
        rows = []
        for h in hooks:
            rows.append({"hook": h, "row shape": shapes.get(h, ""),
                         "rows": sum(_count(sh.get("rows")) for sh in shards) if shards_ok else "",
                         "bytes": sum(_count(f.get("bytes")) for sh in shards
                                      if isinstance(f := _files(sh).get(f"{h}.bin"), dict)) if shards_ok else ""})
        r.add_table("Hooks", rows, caption="Each cached hook (TransformerLens name), the shape of one row "
                                           "(one token), rows stored and bytes on disk.")
        claimed |= {"hooks", "row_shapes", "shapes"} & set(data)
    if shards_ok:
        rows = [{"shard": sh.get("index", i), "row_start": sh.get("row_start", ""), "rows": sh.get("rows", ""),
                 "files": len(_files(sh)),
                 "bytes": sum(_count(f.get("bytes")) for f in _files(sh).values() if isinstance(f, dict))}
                for i, sh in enumerate(shards)]
        r.add_table("Shards", rows, caption=f"{len(rows)} shard(s): first row, rows, files and bytes of each.")
        claimed.add("shards")
    return claimed, Hints()


#: Kinds the commands still write as plain dicts (each goes once its result is typed); any other kind,
#: or none, is an error.
LEGACY_KINDS = {"sae", "transcoder", "store", "snmf", "lib"}
KINDS: dict[str, Renderer] = {
    "sae": _render_sae, "transcoder": _render_sae,
    "store": _render_store,
}
