"""``interp report``: turn a results.json into a standalone HTML report that opens offline (a typed
result's own report, dispatched on ``kind``; see :func:`interp.reports.render_results`)."""

from __future__ import annotations

from pathlib import Path

from interp.cli.common import command, emit
from interp.reports import render_results


def register(sub) -> None:
    p = command(sub, "report", help="render a results.json as a standalone HTML report",
                description="Render RESULTS.json (or a run folder holding results.json) as one "
                            "self-contained HTML file with interactive plotly figures; --out is the HTML file "
                            "(None: report.html beside the results file).",
                out=None, func=run)
    p.add_argument("results", help="path to results.json, or a folder that contains one")
    p.set_defaults(_out_is_json=False)


def run(args) -> int:
    src = Path(args.results)
    out = Path(args.out) if args.out else (src if src.is_dir() else src.parent) / "report.html"
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out {out}: the report is HTML; give a file name ending in .html")
    report = render_results(src)
    path = report.write(out)
    kinds = [s.kind for s in report.sections]
    payload = {"out": str(path), "title": report.title, "bytes": path.stat().st_size,
               "figures": kinds.count("figure"), "tables": kinds.count("table"),
               "token_views": kinds.count("tokens"), "notes": report.notes}
    human = (f"wrote {path} ({payload['bytes'] / 1e6:.1f} MB): {payload['figures']} figures, "
             f"{payload['tables']} tables, {payload['token_views']} token views")
    human += "".join(f"\nnote: {n}" for n in report.notes)
    return emit(args, payload, human)
