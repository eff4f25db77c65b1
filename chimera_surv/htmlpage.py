"""Self-contained HTML pages (the training report, an explained case): images inlined as base64, no network.

Why one helper: both pages must open from a mail attachment or a zip without their folder, and both carry the same
render check: a script that, once the page has loaded, writes into `<pre id="render-check">` how many <img> there
are and which have no pixels (naturalWidth 0), the section headings, the figures without an image, and every element
that overflows its box or the page (details opened for the check), so a headless browser's `--dump-dom` can judge
the rendered page, not its source (test/test_report_html.py).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em;max-width:100%}th,td{border:1px solid #ccc;
padding:.25em .6em;text-align:left;overflow-wrap:break-word}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee;box-sizing:border-box}figcaption{font-size:.9em;color:#555}
details{margin:.6em 0}summary{cursor:pointer;color:#333}
.note{color:#555;font-size:.92em}#render-check{display:none}
"""

CHECK_SCRIPT = """
window.addEventListener('load', function () {
  document.querySelectorAll('details').forEach(function (d) { d.open = true; });
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                   .map(function (i) { return i.alt || i.src.slice(0, 40); });
  var overflow = [];
  document.querySelectorAll('body *').forEach(function (e) {
    if (e.id === 'render-check' || e.tagName === 'SCRIPT') { return; }
    var r = e.getBoundingClientRect();
    if ((e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1) ||
        r.right > document.documentElement.clientWidth + 1) {
      overflow.push(e.tagName + ': ' + (e.textContent || e.getAttribute('alt') || '').trim().slice(0, 60));
    }
  });
  var sections = Array.prototype.slice.call(document.querySelectorAll('h2'))
                      .map(function (h) { return h.textContent; });
  var empty = Array.prototype.slice.call(document.querySelectorAll('figure'))
                   .filter(function (f) { var i = f.querySelector('img'); return !i || i.naturalWidth === 0; }).length;
  document.getElementById('render-check').textContent = JSON.stringify({images: imgs.length, broken: broken,
    overflow: overflow, sections: sections, empty_figures: empty,
    page_overflows: document.documentElement.scrollWidth > document.documentElement.clientWidth});
  document.querySelectorAll('details').forEach(function (d) { d.open = false; });
});
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def img(path: Path, caption: str) -> str:
    """A figure with the PNG inlined (base64) and a caption; alt text = the file name."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img alt="{esc(Path(path).name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A table; numbers are right-aligned and floats shown to 3 decimals."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f'<td class="num">{v:.3f}</td>'
        if isinstance(v, int):
            return f'<td class="num">{v}</td>'
        return f"<td>{esc(v)}</td>"

    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, body: str) -> str:
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body><h1>{esc(title)}</h1>{body}"
            f'<pre id="render-check"></pre><script>{CHECK_SCRIPT}</script></body></html>')
