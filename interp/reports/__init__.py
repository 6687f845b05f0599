"""Standalone HTML reports with interactive plotly figures.

``Report`` builds a report section by section (heatmaps, lines, circuit graphs, token-level
attributions, tables) and writes one self-contained HTML file that opens offline;
``attention_patterns(model, prompt)`` gives an offline attention-pattern viewer (notebooks and reports);
``render_results`` turns any ``results.json`` written by interp into such a report.

    from interp.reports import Report, render_results
    r = Report("IOI circuit", config={...}, meta={"model": "smollm2-135m"})
    r.add_heatmap("attention heads: patching", scores, x_labels, y_labels)
    r.write("runs/ioi/report.html")
    render_results("runs/ioi/results.json").write("runs/ioi/report.html")
"""

from interp.reports.attention import AttentionPatterns, attention_patterns
from interp.reports.figures import Figure
from interp.reports.report import Report, Table, render_results
from interp.reports.tokens import token_view

__all__ = ["AttentionPatterns", "Figure", "attention_patterns", "Report", "render_results", "Table",
           "token_view"]
