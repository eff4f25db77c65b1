"""Write report.json's sections (sections.py) as markdown (report.md) and as one self-contained HTML page.

Why from the JSON alone: the `audit` step adds its section to an existing report and re-renders both pages without
re-running the CV. The HTML inlines every figure (chimera_surv/htmlpage.py), so the page is the whole report; the
markdown links the same PNG files beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chimera_surv.htmlpage import esc, img, page, table
from train.report.sections import Details, Figure, P, Table, build, oof_caveat, stopping_words

__all__ = ["oof_caveat", "render_html", "render_markdown", "stopping_words"]


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown_block(block: Any) -> list[str]:
    if isinstance(block, P):
        return [f"*{block.text}*" if block.note else block.text, ""]
    if isinstance(block, Table):
        lines = ["| " + " | ".join(_cell(h) for h in block.headers) + " |", "|" + "---|" * len(block.headers)]
        return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows] + [""]
    if isinstance(block, Figure):
        return [f"![{block.caption}]({block.file})", "", f"*{block.caption}*", ""]
    if isinstance(block, Details):
        inner = [line for b in block.blocks for line in _markdown_block(b)]
        return ["<details><summary>" + block.summary + "</summary>", "", *inner, "</details>", ""]
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_markdown(summary: dict[str, Any]) -> str:
    lines = ["# Training report", ""]
    for title, blocks in build(summary):
        lines += [f"## {title}", ""]
        for block in blocks:
            lines += _markdown_block(block)
    lines.append("The whole report with every figure inlined: `report.html`.")
    return "\n".join(lines) + "\n"


def _html_block(block: Any, out: Path) -> str:
    if isinstance(block, P):
        return f"<p class=\"note\">{esc(block.text)}</p>" if block.note else f"<p>{esc(block.text)}</p>"
    if isinstance(block, Table):
        return table(block.headers, block.rows)
    if isinstance(block, Figure):
        path = out / block.file
        if not path.is_file():  # never an empty figure: say what is missing
            return f"<p class=\"note\">Figure {esc(block.file)} is missing from the report folder.</p>"
        return img(path, block.caption)
    if isinstance(block, Details):
        return (f"<details><summary>{esc(block.summary)}</summary>"
                + "".join(_html_block(b, out) for b in block.blocks) + "</details>")
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_html(summary: dict[str, Any], out: Path) -> str:
    """The whole report as one page; figures are read from `out` and inlined."""
    body = "".join(f"<section><h2>{esc(title)}</h2>" + "".join(_html_block(b, out) for b in blocks) + "</section>"
                   for title, blocks in build(summary))
    return page("Training report", body)
