"""Attention-pattern viewer: pick a layer and head, read the token x token pattern, hover a token.

``attention_patterns(model, prompt)`` runs one forward pass and keeps every layer's
``blocks.L.attn.hook_pattern`` for that prompt (softmax probabilities A[h, q, k], query q attends
to key k; rows sum to 1 over k <= q).  The result's ``html()`` is a self-contained fragment: the
data as JSON and a small inline script (no CDN, no plotly, works offline and in exported
notebooks).  What the reader sees:

* a layer and a head selector;
* the token x token pattern as a grid (rows: queries, "attends from"; columns: keys,
  "attends to"), shaded by weight from white (0) to dark blue (1);
* two token strips: hovering a token in either strip (or a grid cell) shades the first strip by
  where that token attends (row A[q, :]) and the second by which tokens attend to it (column
  A[:, k]), with the exact weight on hover.

In Jupyter a cell that ends with the result shows the viewer (``_repr_html_``);
``Report.add_attention`` embeds it in a report.

Memory: L x H x T x T float32 for the kept layers (SmolLM2, 30 layers x 9 heads, T = 20: 0.4 MB);
the HTML holds the weights rounded to 3 decimals.
"""

from __future__ import annotations

import html as _html
import itertools
import json
from dataclasses import dataclass, field
from typing import Sequence

import torch

_COUNTER = itertools.count()

CSS = """
.attn-view { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; font-size: 13px;
  background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; padding: 8px 10px; overflow-x: auto; }
.attn-view .ctl { margin-bottom: 6px; } .attn-view select { margin: 0 10px 0 4px; }
.attn-view .strip { font-family: ui-monospace, Menlo, Consolas, monospace; margin: 4px 0; line-height: 1.9; }
.attn-view .strip .lab { color: #555; display: inline-block; width: 150px; font-family: sans-serif; }
.attn-view .t { display: inline-block; white-space: pre; padding: 0 2px; margin: 1px; border-radius: 3px;
  cursor: default; outline: 1px solid #eee; }
.attn-view .t.sel { outline: 2px solid #d6604d; }
.attn-view table.grid { border-collapse: collapse; margin-top: 6px; }
.attn-view table.grid td { width: 14px; height: 14px; padding: 0; border: 1px solid #f4f4f4; }
.attn-view table.grid th { font-family: ui-monospace, Menlo, monospace; font-weight: normal; font-size: 11px;
  color: #444; white-space: pre; padding: 0 3px; }
.attn-view table.grid th.k { writing-mode: vertical-rl; transform: rotate(180deg); height: 60px; text-align: left; }
.attn-view .axis { color: #555; font-size: 12px; }
"""

_SCRIPT = """(function () {
  var root = document.getElementById('%(id)s');
  var D = JSON.parse(document.getElementById('%(id)s-data').textContent);
  var T = D.tokens.length, selL = root.querySelector('select.layer'), selH = root.querySelector('select.head');
  var grid = root.querySelector('table.grid'), out = root.querySelector('.strip.out'), inn = root.querySelector('.strip.in');
  var info = root.querySelector('.info');
  function esc(s) { var d = document.createElement('span'); d.textContent = s; return d.innerHTML; }
  function shade(w) { var c = Math.round(255 - 215 * w), g = Math.round(255 - 150 * w);
    return 'rgb(' + c + ',' + g + ',255)'; }
  function A() { return D.patterns[selL.selectedIndex][selH.selectedIndex]; }
  function strip(el, label) {
    var h = '<span class="lab">' + label + '</span>';
    for (var i = 0; i < T; i++) h += '<span class="t" data-i="' + i + '">' + esc(D.tokens[i]) + '</span>';
    el.innerHTML = h;
  }
  function drawGrid() {
    var a = A(), h = '<tr><th></th>';
    for (var k = 0; k < T; k++) h += '<th class="k">' + esc(D.tokens[k]) + '</th>';
    h += '</tr>';
    for (var q = 0; q < T; q++) {
      h += '<tr><th>' + esc(D.tokens[q]) + '</th>';
      for (var k = 0; k < T; k++) h += '<td data-q="' + q + '" data-k="' + k + '" style="background:' + shade(a[q][k]) +
        '" title="' + esc(D.tokens[q]) + ' [' + q + '] -> ' + esc(D.tokens[k]) + ' [' + k + ']: ' + a[q][k].toFixed(3) + '"></td>';
      h += '</tr>';
    }
    grid.innerHTML = h;
  }
  function focus(i) {
    var a = A(), o = out.querySelectorAll('.t'), n = inn.querySelectorAll('.t');
    for (var j = 0; j < T; j++) {
      o[j].style.background = shade(a[i][j]); o[j].title = 'token ' + i + ' attends to ' + j + ': ' + a[i][j].toFixed(3);
      n[j].style.background = shade(a[j][i]); n[j].title = 'token ' + j + ' attends to ' + i + ': ' + a[j][i].toFixed(3);
      o[j].classList.toggle('sel', j === i); n[j].classList.toggle('sel', j === i);
    }
    info.textContent = 'token ' + i + ' ' + JSON.stringify(D.tokens[i]) + ' (layer ' + D.layers[selL.selectedIndex] +
      ', head ' + selH.selectedIndex + ')';
    root.setAttribute('data-focus', i);
  }
  function hover(e) { var t = e.target, i = t.getAttribute('data-i');
    if (i === null) i = t.getAttribute('data-q'); if (i !== null) focus(parseInt(i, 10)); }
  strip(out, 'attends to (row):'); strip(inn, 'attended from (column):');
  out.addEventListener('mouseover', hover); inn.addEventListener('mouseover', hover); grid.addEventListener('mouseover', hover);
  function redraw() { drawGrid(); focus(parseInt(root.getAttribute('data-focus') || (T - 1), 10)); }
  selL.addEventListener('change', redraw); selH.addEventListener('change', redraw);
  redraw();
  root.setAttribute('data-ready', '1');
})();"""


@dataclass
class AttentionPatterns:
    """Attention probabilities of one prompt, every kept layer and head, with a viewer."""

    tokens: list[str]
    """The prompt's tokens as text (BOS included when the tokenizer adds it)."""
    layers: list[int]
    """Layer index of each entry of ``patterns``' first axis."""
    patterns: torch.Tensor = field(repr=False)
    """float32 [len(layers), H, T, T]: ``patterns[i, h, q, k]`` is the weight query q gives key k
    in layer ``layers[i]``, head h (``blocks.L.attn.hook_pattern``); rows sum to 1."""
    model: str = ""
    """Name of the model the patterns come from."""

    def __post_init__(self):
        if self.patterns.ndim != 4 or self.patterns.shape[-1] != self.patterns.shape[-2]:
            raise ValueError(f"patterns must be [layers, heads, T, T], got {tuple(self.patterns.shape)}")
        if self.patterns.shape[0] != len(self.layers) or self.patterns.shape[-1] != len(self.tokens):
            raise ValueError(f"patterns {tuple(self.patterns.shape)} do not match {len(self.layers)} layers "
                             f"and {len(self.tokens)} tokens")

    def head(self, layer: int, head: int) -> torch.Tensor:
        """The [T, T] pattern of one head (``layer`` is a model layer index)."""
        if layer not in self.layers:
            raise ValueError(f"layer {layer} was not kept; kept layers: {self.layers}")
        return self.patterns[self.layers.index(layer), head]

    def html(self, layer: int | None = None, head: int = 0) -> str:
        """A self-contained HTML fragment (data + inline script), opening at ``layer``/``head``."""
        vid = f"attn-view-{next(_COUNTER)}"
        data = {"tokens": self.tokens, "layers": self.layers,
                "patterns": torch.round(self.patterns.float() * 1000).div(1000).tolist()}
        li = self.layers.index(layer) if layer is not None else 0
        opt = lambda vals, sel, fmt: "".join(  # noqa: E731
            f'<option{" selected" if i == sel else ""}>{fmt(v)}</option>' for i, v in enumerate(vals))
        n_heads = self.patterns.shape[1]
        payload = json.dumps(data).replace("</", "<\\/")  # no "</script>" inside the data block
        return (
            f'<div class="attn-view" id="{vid}" data-model="{_html.escape(self.model)}">'
            f'<div class="ctl">Layer<select class="layer">{opt(self.layers, li, str)}</select>'
            f'Head<select class="head">{opt(range(n_heads), head, str)}</select>'
            f'<span class="axis">hover a token or a cell: </span><span class="info axis"></span></div>'
            '<div class="strip out"></div><div class="strip in"></div>'
            '<div class="axis">rows: query (attends from) · columns: key (attends to) · white 0 → blue 1</div>'
            '<table class="grid"></table>'
            f'<script type="application/json" id="{vid}-data">{payload}</script>'
            f"<script>{_SCRIPT % {'id': vid}}</script></div>"
        )

    def _repr_html_(self) -> str:
        return f"<style>{CSS}</style>" + self.html()


def attention_patterns(model, prompt: str, layers: Sequence[int] | None = None) -> AttentionPatterns:
    """One forward pass over ``prompt``; keep ``blocks.L.attn.hook_pattern`` of ``layers`` (default all).

    Raises ``ValueError`` for an empty prompt or a layer the model does not have.
    """
    from interp.models import model_name

    n = model.cfg.n_layers
    layers = list(range(n)) if layers is None else [int(x) for x in layers]
    bad = [x for x in layers if not 0 <= x < n]
    if bad:
        raise ValueError(f"layers {bad} out of range: the model has {n} layers (0..{n - 1})")
    ids = model.to_tokens(prompt) if hasattr(model, "to_tokens") else None
    if ids is None or ids.shape[-1] == 0:
        raise ValueError("attention_patterns needs a non-empty prompt")
    names = [f"blocks.{x}.attn.hook_pattern" for x in layers]
    with torch.no_grad():
        _, cache = model.run_with_cache(ids, names_filter=lambda name: name in names)
    pats = torch.stack([cache[nm][0].float().cpu() for nm in names])
    tokens = [model.tokenizer.decode([int(t)]) for t in ids[0]]
    return AttentionPatterns(tokens=tokens, layers=layers, patterns=pats, model=model_name(model))
