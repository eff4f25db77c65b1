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
# Reference data (all inside the repository: resources/ and a parametric stand-in)
# ------------------------------------------------------------------------------------------------------------

GENE_ORDER_PATH = PROJECT_ROOT / "resources" / "gene_order.json"
N_CENSORED = 112  # censored patients of the 176 public Task 3 training patients (64 events; chimera-spec.md §7)


def censoring_stand_in() -> np.ndarray:
    """Censored follow-up times (months) of a parametric stand-in for the 112 censored Task 3 patients.

    Why a stand-in: the real outcomes come under the challenge data's terms and are not redistributed. A normal
    truncated to the published range (median 91, mean 92, range 17-202 months; chimera-spec.md §7), taken at
    evenly spaced quantiles so it is deterministic.
    """
    from scipy.stats import truncnorm

    q = (np.arange(N_CENSORED) + 0.5) / N_CENSORED
    return np.sort(truncnorm.ppf(q, (17 - 92) / 35, (202 - 92) / 35, loc=92, scale=35))


def load_censoring_times(csv_path: Path | None = None) -> np.ndarray:
    """Censored follow-up times (months): the parametric stand-in, or the censored rows of a `Time`/`Progression`
    table when one is given (e.g. for an optional reference test). An unreadable table falls back to the stand-in
    with a one-line warning naming only the file name."""
    if csv_path is None:
        return censoring_stand_in()
    path = Path(csv_path)
    try:
        import csv

        with path.open() as handle:
            rows = list(csv.DictReader(handle))
        times = np.array([float(r["Time"]) for r in rows if int(r["Progression"]) == 0], dtype=float)
    except (OSError, KeyError, ValueError, TypeError) as err:
        cause = err.strerror if isinstance(err, OSError) else f"{type(err).__name__} {err}"  # no absolute path
        warnings.warn(f"{path.name}: {cause}; censoring times from the parametric stand-in", stacklevel=2)
        return censoring_stand_in()
    if not times.size:
        warnings.warn(f"{path.name}: no censored rows; censoring times from the parametric stand-in", stacklevel=2)
        return censoring_stand_in()
    return np.sort(times)


def load_gene_order(path: Path | None = None) -> list[str]:
    """The 19,359 CHIMERA RNA gene symbols (resources/gene_order.json, shipped with the repository)."""
    candidate = Path(path) if path else GENE_ORDER_PATH
    genes = json.loads(candidate.read_text()) if candidate.is_file() else None
    if isinstance(genes, list) and genes:
        return [str(g) for g in genes]
    raise FileNotFoundError(f"{candidate.name}: no gene list there (expected a JSON list of gene symbols)")


