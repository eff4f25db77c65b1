"""Open a page in headless Chromium (Debian's `chromium`; `make test` installs it) and report what rendered.

`render(page, tmp)` → (render-check JSON written by the page's own script, console error lines, screenshot path).
The page's script (chimera_surv/htmlpage.py) lists every <img> whose naturalWidth is 0; console errors come from
Chromium's `--enable-logging=stderr` CONSOLE lines.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

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
    dom = subprocess.run([*base, "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0", "--dump-dom",
                          url], check=False, capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="render-check">([^<]*)</pre>', dom.stdout)
    check = json.loads(match.group(1)) if match and match.group(1) else {}
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    shot = tmp / f"{page.stem}.png"
    subprocess.run([*base, f"--window-size=1200,{height}", f"--screenshot={shot}", url], capture_output=True,
                   timeout=120, check=True)
    return check, console, shot


def non_blank(png: Path) -> bool:
    """More than a page of one colour: a fair share of pixels differ from the most common one."""
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.int16)
    _values, counts = np.unique(pixels, return_counts=True)
    return 1.0 - counts.max() / pixels.size > 0.05
