"""The fixed synthetic world: seeds, keyed generators, gene hashes and the reference data it is fitted to.

Why a module of its own: every other part (patients, RNA, rendering, site effects) keys its randomness the same
way, so a patient depends only on (stream, task, seed, index) and a gene behaves the same in every panel.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path

import numpy as np

WORLD_SEED = 20250923
PROJECT_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = PROJECT_ROOT.parent / "shared" / "reference" / "chimera"
TASK_IDS = (1, 2, 3)
# Share of cohort B in the public training sets: Task 2 50/182, Task 3 51/176 (chimera-spec.md §2.2, §7).
COHORT_B_FRACTION = {1: 0.0, 2: 50 / 182, 3: 51 / 176}
BRS3_PREVALENCE = 57 / 182  # chimera-spec.md §1.3


def _rng(*keys: int) -> np.random.Generator:
    """A generator keyed by integers, so each patient/slide stream is independent of every other."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _gene_uniforms(genes: list[str], salt: str = "") -> np.ndarray:
    """(G, 8) uniforms in (0, 1) from a SHA-512 of world seed + salt + gene name: a gene behaves the same in
    every panel and every Python run (unlike `hash()`)."""
    raw = b"".join(hashlib.sha512(f"{WORLD_SEED}:{salt}:{g}".encode()).digest() for g in genes)
    words = np.frombuffer(raw, dtype="<u8").reshape(len(genes), 8)
    return ((words >> np.uint64(11)).astype(np.float64) + 0.5) / float(2**53)


# ------------------------------------------------------------------------------------------------------------
# Reference data (read from ../shared/reference, never copied into the project)
# ------------------------------------------------------------------------------------------------------------


def load_censoring_times(csv_path: Path | None = None) -> np.ndarray:
    """Censored follow-up times (months) of the 176 real Task 3 patients; a parametric stand-in if absent.

    The stand-in matches the published summary (median 91, mean 92, range 17-202; chimera-spec.md §7), so the
    generator still works where the shared folder is not mounted (e.g. inside a container).
    """
    path = Path(csv_path) if csv_path else REFERENCE_DIR / "bladder-rec.csv"
    if path.exists():
        import csv

        with path.open() as handle:
            rows = list(csv.DictReader(handle))
        times = np.array([float(r["Time"]) for r in rows if int(r["Progression"]) == 0], dtype=float)
        if times.size:
            return np.sort(times)
    warnings.warn(f"{path} not found: censoring times drawn from a parametric stand-in", stacklevel=2)
    q = (np.arange(112) + 0.5) / 112
    from scipy.stats import truncnorm

    return np.sort(truncnorm.ppf(q, (17 - 92) / 35, (202 - 92) / 35, loc=92, scale=35))


def load_gene_order(path: Path | None = None) -> list[str]:
    """The 19,359 CHIMERA RNA gene symbols (project resources first, then the shared reference copy)."""
    candidates = (
        [Path(path)]
        if path
        else [PROJECT_ROOT / "resources" / "gene_order.json", REFERENCE_DIR / "gene_order.json"]
    )
    for candidate in candidates:
        if candidate.exists():
            genes = json.loads(candidate.read_text())
            if isinstance(genes, list) and genes:
                return [str(g) for g in genes]
    raise FileNotFoundError(f"no gene order found in {[str(c) for c in candidates]}")


