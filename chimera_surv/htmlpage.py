"""Self-contained HTML pages (the training report, an explained case): images inlined as base64, no network.

Why one helper: both pages must open from a mail attachment or a zip without their folder, and both carry the same
render check: a script that, once the page has loaded, writes into `<pre id="render-check">` how many <img> there
are and which have no pixels (naturalWidth 0), so a headless browser's `--dump-dom` can tell a page whose figures
all rendered from one with a broken image (test/test_report_html.py).
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
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:left}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.9em;color:#555}
.note{color:#555;font-size:.92em}#render-check{display:none}
"""

CHECK_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                   .map(function (i) { return i.alt || i.src.slice(0, 40); });
  document.getElementById('render-check').textContent =
    JSON.stringify({images: imgs.length, broken: broken});
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
