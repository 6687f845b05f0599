"""The attention-pattern viewer: its data against the definition, and its hover in a real browser.

The definition check computes softmax(q k^T / sqrt(d_head) + causal mask) from the model's own
``hook_q`` / ``hook_k`` activations, by hand, and compares with what the viewer holds.  The browser
check opens the viewer in headless Chromium, dispatches a real ``mouseover`` on a token, and reads
back the colours the page gave the two strips: they must be the shade of that token's row and
column of the selected head, computed here in Python from the same weights.
"""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from interp.reports import Report
from interp.reports.attention import AttentionPatterns, attention_patterns


def test_patterns_are_softmax_of_scaled_scores(tiny_gpt2):
    """GPT-2 (no GQA, no rotary): A = softmax(q k^T / sqrt(d_head)) under the causal mask."""
    view = attention_patterns(tiny_gpt2, "abc abd")
    ids = tiny_gpt2.to_tokens("abc abd")
    with torch.no_grad():
        _, cache = tiny_gpt2.run_with_cache(ids)
    T = ids.shape[1]
    mask = torch.ones(T, T).triu(1).bool()
    for layer in range(tiny_gpt2.cfg.n_layers):
        q, k = cache[f"blocks.{layer}.attn.hook_q"][0], cache[f"blocks.{layer}.attn.hook_k"][0]  # [T, H, d]
        s = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(q.shape[-1])
        want = s.masked_fill(mask, float("-inf")).softmax(-1)
        # float32 softmax over T <= 8 scores of size ~1: a few ulps; 1e-5 is ~100 eps
        torch.testing.assert_close(view.head(layer, 0), want[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(view.patterns[layer], want, rtol=0, atol=1e-5)
    assert view.tokens[0] == "<bos>" and len(view.tokens) == T


def test_bad_input_is_named(tiny_llama):
    with pytest.raises(ValueError, match="out of range"):
        attention_patterns(tiny_llama, "ab", layers=[7])
    with pytest.raises(ValueError, match="do not match"):
        AttentionPatterns(tokens=["a"], layers=[0], patterns=torch.zeros(1, 2, 3, 3))
    view = attention_patterns(tiny_llama, "ab", layers=[1])
    with pytest.raises(ValueError, match="was not kept"):
        view.head(0, 0)


def _shade(w: float) -> str:
    """The page's colour for weight w (same formula as the viewer's script)."""
    c, g = round(255 - 215 * w), round(255 - 150 * w)
    return f"rgb({c}, {g}, 255)"


def test_hover_in_a_real_browser(tmp_path):
    from test_browser_report import chromium

    torch.manual_seed(0)
    T, H = 5, 3
    pats = torch.rand(2, H, T, T).tril()
    pats = pats / pats.sum(-1, keepdim=True)
    view = AttentionPatterns(tokens=["<bos>", "Mary", " and", " John", "</script>"], layers=[4, 5], patterns=pats,
                             model="toy")
    r = Report("attention viewer")
    r.add_attention("Attention patterns", view, layer=5, head=2)
    page = tmp_path / "report.html"
    r.write(page)
    # a real mouseover on token 3 of the first strip, then the strips' colours are written into the DOM
    probe = ("<script>setTimeout(function () { var v = document.querySelector('.attn-view');"
             "v.querySelector('.strip.out .t[data-i=\"3\"]').dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));"
             "var o = [].map.call(v.querySelectorAll('.strip.out .t'), function (e) { return e.style.background; });"
             "var n = [].map.call(v.querySelectorAll('.strip.in .t'), function (e) { return e.style.background; });"
             "document.body.setAttribute('data-probe', JSON.stringify({out: o, in: n, focus: v.getAttribute('data-focus'),"
             "ready: v.getAttribute('data-ready'), cells: v.querySelectorAll('table.grid td').length}));"
             "}, 100);</script></body>")
    page.write_text(page.read_text().replace("</body>", probe, 1))
    dom = chromium(page, tmp_path, "--dump-dom").stdout
    got = json.loads(re.search(r"data-probe=\"([^\"]*)\"", dom).group(1).replace("&quot;", '"'))
    assert got["ready"] == "1" and got["focus"] == "3" and got["cells"] == T * T
    a = torch.round(pats[1, 2] * 1000) / 1000  # layer 5 (second kept), head 2, as the page holds it
    assert got["out"] == [_shade(a[3, j].item()) for j in range(T)]  # where token 3 attends
    assert got["in"] == [_shade(a[j, 3].item()) for j in range(T)]   # which tokens attend to token 3
    assert "&lt;/script&gt;" in dom  # a token that looks like markup is escaped, not executed
