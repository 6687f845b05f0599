"""A small Markdown-to-HTML converter for report prose (no dependency).

Supported: ``#``/``##``/``###`` headings, paragraphs, ``-``/``*`` and ``1.`` lists, fenced code
blocks, ``**bold**``, ``*italic*``, `` `code` `` and ``[text](url)`` links.  All text is
HTML-escaped first, so a prompt containing ``<script>`` prints as text.  Anything fancier
can be passed to :meth:`Report.add_text` as HTML (a string starting with ``<``).
"""

from __future__ import annotations

import html
import itertools
import re

_INLINE = [
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![*\w])\*([^*\s][^*]*)\*(?!\w)"), r"<em>\1</em>"),
    (re.compile(r"\[([^\]]+)\]\(((?:https?://|#|\./|/)[^)\s]*)\)"), r'<a href="\2">\1</a>'),
]


def inline(text: str) -> str:
    """Escape ``text`` and apply the inline rules (code spans are not further formatted)."""
    parts = re.split(r"(`[^`]+`)", html.escape(text, quote=False))
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{part[1:-1]}</code>")
        else:
            for pat, rep in _INLINE:
                part = pat.sub(rep, part)
            out.append(part)
    return "".join(out)


def to_html(md: str) -> str:
    """Markdown ``md`` as an HTML fragment; ``# h`` becomes ``<h3>`` (a report's sections are ``<h2>``)."""
    lines = iter(md.replace("\r\n", "\n").split("\n"))
    out: list[str] = []
    para: list[str] = []
    list_tag: str | None = None

    def flush_para():
        if para:
            out.append(f"<p>{inline(' '.join(para))}</p>")
            para.clear()

    def close_list():
        nonlocal list_tag
        if list_tag:
            out.append(f"</{list_tag}>")
            list_tag = None

    for line in lines:
        s = line.strip()
        if s.startswith("```"):
            flush_para(), close_list()
            # the code lines up to the closing fence, which takewhile consumes (or to the end)
            code = list(itertools.takewhile(lambda ln: not ln.strip().startswith("```"), lines))
            out.append(f"<pre><code>{html.escape(chr(10).join(code))}</code></pre>")
        elif not s:
            flush_para(), close_list()
        elif m := re.match(r"(#{1,4})\s+(.*)", s):
            flush_para(), close_list()
            level = min(6, len(m.group(1)) + 2)
            out.append(f"<h{level}>{inline(m.group(2))}</h{level}>")
        elif m := re.match(r"([-*]|\d+\.)\s+(.*)", s):
            flush_para()
            tag = "ol" if m.group(1)[0].isdigit() else "ul"
            if list_tag != tag:
                close_list()
                out.append(f"<{tag}>")
                list_tag = tag
            out.append(f"<li>{inline(m.group(2))}</li>")
        else:
            close_list()
            para.append(s)
    flush_para(), close_list()
    return "\n".join(out)
