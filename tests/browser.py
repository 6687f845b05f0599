"""Headless Chromium for report tests (Debian's ``chromium``; ``INTERP_CHROMIUM`` picks another binary).

:func:`check_result_report` is what every report kind's test calls: it writes a typed result's
report, opens it in Chromium, and checks, from the rendered DOM, that the page drew every figure
without a script error, that every visible axis of every plotly figure has a title, and that each
title is what the result type declares the plotted field to be (``Result.axes``; the figure code
only records *which* field an axis shows).  The page it checks is the one ``interp report``
writes from the saved ``results.json``, after a JSON round trip that must give the result back.
With ``INTERP_SCREENSHOT_DIR`` set, a 1400 x 900 screenshot of the first screen and a tall one of
the whole page are kept there.

:func:`report_test` declares a test to be the browser test of result kinds; the test fails unless
it ran :func:`check_result_report` on each declared kind, and tests/test_report_kinds.py checks
(from the test sources) that every registered kind has such a test.
"""

from __future__ import annotations

import functools
import html as _html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = (os.environ.get("INTERP_CHROMIUM") or shutil.which("chromium")
            or shutil.which("chromium-browser") or shutil.which("google-chrome"))
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not found: install Debian's package "
                             "(apt-get update && apt-get install -y chromium); CI installs it")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=20000", "--enable-logging=stderr", "--v=0"]


def chromium(page: Path, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on ``page`` with a fresh profile folder."""
    profile = tempfile.mkdtemp(prefix="profile-", dir=workdir)
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return proc


def status_of(dom: str) -> dict:
    """The report's own draw status (``#interp-status``): state, figures, drawn, errors, text."""
    m = re.search(r'<div id="interp-status"([^>]*)>([^<]*)</div>', dom)
    assert m, "the report's status element is missing from the DOM"
    attrs = dict(re.findall(r'data-([a-z]+)="([^"]*)"', m.group(1)))
    return {**attrs, "text": m.group(2)}


def plot_divs(dom: str) -> dict[str, str]:
    """The inner DOM of each figure div, by id."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<div class="interp-plot[^"]*" id="([^"]+)"', dom)]
    ends = [s for s, _ in starts[1:]] + [len(dom)]
    return {fid: dom[s:e] for (s, fid), e in zip(starts, ends)}


def _axis_titles(inner: str, which: str) -> list[str]:
    """Axis titles plotly drew (``<text class="xtitle">``), one per visible axis of that letter."""
    return [_html.unescape(re.sub(r"<[^>]+>", "", t)).strip()
            for t in re.findall(rf'<text class="{which}title"[^>]*>(.*?)</text>', inner)]


def _figure_meta(page_html: str, fid: str) -> dict:
    m = re.search(rf'<script type="application/json" id="{re.escape(fid)}-data">(.*?)</script>', page_html, re.S)
    assert m, f"{fid}: the figure's data block is missing"
    fig = json.loads(m.group(1).replace("<\\/", "</"))
    return (fig.get("layout", {}).get("meta") or {}).get("fields") or {}


def check_rendered_axes(page_html: str, dom: str, axes: dict[str, str], name: str) -> int:
    """Every drawn axis is titled, names the field it shows, and the title is the declared one.

    Returns the number of figures checked."""
    divs = plot_divs(dom)
    for fid, inner in divs.items():
        fields = _figure_meta(page_html, fid)
        for letter in ("x", "y"):
            hidden = f'class="{letter}axislayer-above"' in inner and not re.search(
                rf'class="{letter}tick"', inner)
            titles = _axis_titles(inner, letter)
            if hidden and not titles:
                continue                   # an axis plotly did not draw (e.g. a graph's y)
            assert titles and titles[0], f"{name} {fid}: the {letter} axis has no title"
            field = fields.get(letter)
            assert field, (f"{name} {fid}: the {letter} axis ({titles[0]!r}) does not say which result "
                           f"field it shows (Report.add_*(..., fields=(x, y)))")
            assert field in axes, f"{name} {fid}: field {field!r} is not declared in {name}.axes"
            assert titles[0].lower() == axes[field].lower(), (
                f"{name} {fid}: the {letter} axis is titled {titles[0]!r}, but {field!r} is declared "
                f"to be {axes[field]!r}")
    return len(divs)


def keep_screenshots(page: Path, workdir: Path, stem: str) -> None:
    """With ``INTERP_SCREENSHOT_DIR``: the first screen (1400 x 900) and the whole page, kept there."""
    keep = os.environ.get("INTERP_SCREENSHOT_DIR")
    if not keep:
        return
    Path(keep).mkdir(parents=True, exist_ok=True)
    for suffix, size in (("", "1400,900"), ("-full", "1400,6000")):
        shot = Path(keep) / f"{stem}{suffix}.png"
        chromium(page, workdir, f"--screenshot={shot}", f"--window-size={size}")


CHECKED: list[str] = []
"""Kinds :func:`check_result_report` has checked in this session, in order."""


def report_test(*kinds: str):
    """Decorator: the test is the browser test of ``kinds``; it fails unless it checked each of them
    with :func:`check_result_report` (tests/test_report_kinds.py reads these declarations)."""
    def wrap(test):
        @functools.wraps(test)
        def run(*args, **kwargs):
            start = len(CHECKED)
            test(*args, **kwargs)
            missing = set(kinds) - set(CHECKED[start:])
            if missing and CHROMIUM is None:  # the test's other checks ran; its browser part could not
                pytest.skip(f"browser check of {sorted(missing)} not run: headless Chromium not found")
            assert not missing, f"{test.__name__} declares report kind(s) {sorted(missing)} but did not check them"
        return run
    return wrap


def check_result_report(result, workdir: Path, stem: str | None = None) -> str:
    """Save ``result``, check its JSON round trip, write its report with ``interp report``, render
    it in Chromium, check status and axes; return the DOM."""
    from interp.cli.main import main as cli
    from interp.results import load_result

    stem = stem or result.kind
    src = result.save(Path(workdir) / f"{stem}.json")
    back = load_result(src)
    assert type(back) is type(result) and back.to_json() == json.loads(json.dumps(result.to_json())), \
        f"{stem}: the result does not survive its JSON round trip"
    page = Path(workdir) / f"{stem}.html"
    assert cli(["report", str(src), "--out", str(page)]) == 0, f"{stem}: `interp report` failed"
    proc = chromium(page, Path(workdir), "--dump-dom")
    dom = proc.stdout
    st = status_of(dom)
    assert st["state"] == "ok" and st["errors"] == "0" and st["figures"] == st["drawn"], (stem, st)
    assert "Uncaught" not in proc.stderr, proc.stderr[-2000:]
    page_html = page.read_text(encoding="utf-8")
    n = check_rendered_axes(page_html, dom, type(result).axes, type(result).__name__)
    assert n == int(st["figures"])
    assert result.summary(), f"{stem}: the result has no summary sentence"
    first_fig = dom.find('class="interp-plot')
    assert 0 <= dom.find('id="summary"') and (first_fig < 0 or dom.find('id="summary"') < first_fig), \
        f"{stem}: the report does not open with the summary"
    keep_screenshots(page, Path(workdir), stem)
    CHECKED.append(result.kind)
    return dom
