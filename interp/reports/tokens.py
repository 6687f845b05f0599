"""Token-level attribution view: the prompt as coloured tokens, one colour per score.

A plain HTML fragment (no JavaScript), so it prints and reads offline like the rest of the
report.  Colour follows a diverging scale centred on zero: red for positive scores, blue for
negative, white for zero, with the intensity ``|score| / max|score|`` over the finite scores of
this prompt.  Hovering a token shows its index, its exact text (``repr``) and its score.

Every token is HTML-escaped.  Whitespace is made visible without changing the text: a space
token keeps its width (``white-space: pre``) and gets a faint outline, a newline shows as
``↵`` and the view breaks the line after it, a tab as ``→``.  NaN/inf scores are drawn hatched grey
and counted in the caption.
"""

from __future__ import annotations

import html
import math
from typing import Any, NamedTuple, Sequence

import numpy as np

from interp.reports.assets import asset
from interp.reports.figures import as_array, gap_note

#: RGB anchors of the diverging scale (blue -> white -> red), matching figures.DIVERGING.
_NEG, _MID, _POS = (33, 102, 172), (247, 247, 247), (178, 24, 43)
#: How newline, tab and carriage return are shown (the tab also keeps its width).
_SHOWN = {"\n": '<span class="tok-ctl">↵</span>', "\t": '<span class="tok-ctl">→</span>\t',
          "\r": '<span class="tok-ctl">␍</span>'}

CSS = asset("tokens.css")


class TokenView(NamedTuple):
    """The HTML of one token-attribution view and its caption."""

    html: str
    """An HTML fragment (``<div class="tok-view">`` plus a colour legend)."""
    caption: str
    """What the reader sees, including a note on NaN/inf scores."""
    n_nonfinite: int
    """How many scores were NaN or inf."""

    def _repr_html_(self) -> str:
        """Inline display in Jupyter (the view carries its own CSS)."""
        return f"<style>{CSS}</style>{self.html}<p style='color:#555;font-size:13px'>{html.escape(self.caption)}</p>"


def score_colour(score: float, scale: float) -> tuple[str, str]:
    """Background and text colour for ``score`` on a diverging scale of half-width ``scale``."""
    t = 0.0 if scale <= 0 else max(-1.0, min(1.0, score / scale))
    end = _POS if t >= 0 else _NEG
    a = abs(t)
    rgb = tuple(round(m + (e - m) * a) for m, e in zip(_MID, end))
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})", ("#fff" if a > 0.6 else "#111")


def display_token(tok: str) -> tuple[str, bool]:
    """HTML for a token's text with whitespace made visible; also whether it is all whitespace."""
    out = []
    for ch in tok:
        if ch in _SHOWN:
            out.append(_SHOWN[ch])
        elif ch.isprintable() or ch == " ":
            out.append(html.escape(ch))
        else:
            out.append(f'<span class="tok-ctl">\\x{ord(ch):02x}</span>')
    text = "".join(out) or '<span class="tok-ctl">∅</span>'
    return text, tok != "" and tok.isspace()


def token_view(tokens: Sequence[str], scores: Any, title: str = "tokens", caption: str = "") -> TokenView:
    """The coloured-token HTML for one prompt.

    ``tokens``: the token strings (decoded, one per position); ``scores``: one number per token.
    """
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise ValueError(f"{title}: tokens must be a list of strings, got {type(tokens).__name__}")
    toks = [str(t) for t in tokens]
    s = as_array(scores, f"{title}: scores", ndim=1)
    if len(s) != len(toks):
        raise ValueError(f"{title}: {len(toks)} tokens but {len(s)} scores")
    fin = s[np.isfinite(s)]
    scale = float(np.abs(fin).max()) if fin.size else 0.0
    spans = []
    for i, (tok, v) in enumerate(zip(toks, s)):
        text, ws = display_token(tok)
        classes = ["tok"] + (["tok-ws"] if ws else [])
        if math.isfinite(v):
            bg, fg = score_colour(float(v), scale)
            style = f' style="background:{bg};color:{fg}"'
            val = f"{v:.4g}"
        else:
            classes.append("tok-nan")
            style, val = "", str(v)
        tip = html.escape(f"#{i} {tok!r}  score {val}", quote=True)
        spans.append(f'<span class="{" ".join(classes)}" title="{tip}" data-score="{val}"{style}>{text}</span>'
                     + ("<br>" if "\n" in tok else ""))
    legend = (f'<div class="tok-legend"><span>{-scale:.3g}</span><span class="bar"></span>'
              f'<span>{scale:.3g}</span><span>(hover a token for its exact score)</span></div>')
    body = f'<div class="tok-view">{"".join(spans)}</div>{legend}'
    bad = len(s) - fin.size
    if not caption:
        caption = (f"The {len(toks)} tokens of the prompt, each coloured by its score: red "
                   f"positive, blue negative, white zero, full colour at |score| = {scale:.3g}. "
                   "Whitespace tokens are outlined; ↵ marks a newline.")
    return TokenView(body, caption + gap_note(bad, "scores"), bad)
