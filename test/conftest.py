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
# Optional reference data beside the checkout (developers and CI only; users do not have it). Tests marked
# `reference` read it and skip, with this reason, where it is absent; nothing else may read it.
SHARED = ROOT.parent / "shared"
REFERENCE = SHARED / "reference"
REFERENCE_ABSENT = "optional reference data ../shared/reference is absent (users do not have it; CI runs it apart)"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running; excluded from `make test` (run with `make test-slow`)")
    config.addinivalue_line(
        "markers", "reference: reads ../shared/reference (optional public reference data); skips where it is absent"
    )


def pytest_collection_modifyitems(config, items):
    """Reference tests skip with their reason where the reference folder is absent (a user's clone)."""
    if REFERENCE.is_dir():
        return
    skip = pytest.mark.skip(reason=REFERENCE_ABSENT)
    for item in items:
        if item.get_closest_marker("reference"):
            item.add_marker(skip)
