"""Suite-wide settings: offline hubs, deterministic threads, the `slow` and `reference` markers."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VIPS_CONCURRENCY", "1")
# Hypothesis keeps its example cache outside the checkout: tests write only to temporary folders.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", tempfile.mkdtemp(prefix="hypothesis-"))

ROOT = Path(__file__).resolve().parents[1]
# Optional public reference tables, never shipped: only the folder named by CHIMERA_REFERENCE_DIR (CI's separate
# reference step sets it). Tests marked `reference` read it and skip, with this reason, when it is unset or absent;
# nothing else may read it, and no path outside the repository is assumed.
_REFERENCE_ENV = os.environ.get("CHIMERA_REFERENCE_DIR", "")
# unset: a path that can never be a folder, so the marked tests skip and unmarked ones fail loudly if they use it
REFERENCE = Path(_REFERENCE_ENV) if _REFERENCE_ENV else Path(os.devnull) / "chimera-reference-not-given"
REFERENCE_ABSENT = ("optional reference tables not given (set CHIMERA_REFERENCE_DIR to a folder holding "
                    "intershap-glioma/ and chimera/; they are not shipped, and CI runs them as a separate step)")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running; excluded from `make test` (run with `make test-slow`)")
    config.addinivalue_line(
        "markers", "reference: reads $CHIMERA_REFERENCE_DIR (optional public reference tables); skips without it"
    )


def pytest_collection_modifyitems(config, items):
    """Reference tests skip with their reason where the reference folder is absent (a user's clone)."""
    if REFERENCE.is_dir():
        return
    skip = pytest.mark.skip(reason=REFERENCE_ABSENT)
    for item in items:
        if item.get_closest_marker("reference"):
            item.add_marker(skip)
