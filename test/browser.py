"""Open a page in headless Chromium (Debian's `chromium`; `make test` installs it) and report what rendered.

`render(page, tmp)` → (render-check JSON written by the page's own script, console error lines, screenshot path),
both at WIDTH px wide. The page's script (chimera_surv/htmlpage.py) lists every <img> whose naturalWidth is 0, the
section headings, figures without an image and every element wider than its box or the page; console errors come
from Chromium's `--enable-logging=stderr` CONSOLE lines. `assert_complete` turns that into one test assertion.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

WIDTH = 1280
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium is not installed: `make test` installs Debian's chromium (or: apt-get install chromium)")


def render(page: Path, tmp: Path, height: int = 2400) -> tuple[dict, list[str], Path]:
    base = [chromium(), *FLAGS, f"--user-data-dir={tmp / 'chromium-profile'}"]
    url = page.resolve().as_uri()
    dom = subprocess.run([*base, f"--window-size={WIDTH},{height}", "--virtual-time-budget=5000",
                          "--enable-logging=stderr", "--v=0", "--dump-dom", url],
                         check=False, capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="render-check">([^<]*)</pre>', dom.stdout)
    check = json.loads(match.group(1)) if match and match.group(1) else {}
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    shot = tmp / f"{page.stem}.png"
    subprocess.run([*base, f"--window-size={WIDTH},{height}", f"--screenshot={shot}", url], capture_output=True,
                   timeout=120, check=True)
    return check, console, shot


def assert_complete(check: dict, console: list[str], shot: Path, sections: list[str], images: int) -> None:
    """The rendered page has every expected section heading (by prefix), `images` images all with pixels, no
    figure without its image, nothing wider than its box or the page at WIDTH px, no console error, and a
    screenshot that is not blank."""
    assert check, "the page's render check did not run"
    missing = [s for s in sections if not any(h.startswith(s) for h in check["sections"])]
    assert not missing, f"sections missing: {missing}; present: {check['sections']}"
    assert check["images"] == images and check["broken"] == [] and check["empty_figures"] == 0, check
    assert check["overflow"] == [] and not check["page_overflows"], check["overflow"]
    assert console == []
    assert non_blank(shot)


def non_blank(png: Path) -> bool:
    """More than a page of one colour: a fair share of pixels differ from the most common one."""
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.int16)
    _values, counts = np.unique(pixels, return_counts=True)
    return 1.0 - counts.max() / pixels.size > 0.05
