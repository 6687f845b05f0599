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

from interp.models import model_name
from interp.reports.assets import asset

_COUNTER = itertools.count()

CSS = asset("attention.css")

_SCRIPT = asset("attention.js")


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
    n = model.cfg.n_layers
    layers = list(range(n)) if layers is None else [int(x) for x in layers]
    bad = [x for x in layers if not 0 <= x < n]
    if bad:
        raise ValueError(f"layers {bad} out of range: the model has {n} layers (0..{n - 1})")
    ids = model.to_tokens(prompt)
    if ids.shape[-1] == 0:
        raise ValueError("attention_patterns needs a non-empty prompt")
    names = [f"blocks.{x}.attn.hook_pattern" for x in layers]
    with torch.no_grad():
        _, cache = model.run_with_cache(ids, names_filter=lambda name: name in names)
    pats = torch.stack([cache[nm][0].float().cpu() for nm in names])
    tokens = [model.tokenizer.decode([int(t)]) for t in ids[0]]
    return AttentionPatterns(tokens=tokens, layers=layers, patterns=pats, model=model_name(model))
