"""Clinical records drawn from the latent risk, in the JSON conventions of the real CHIMERA files."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np

from chimera_surv.synthetic.common import BRS3_PREVALENCE, _sigmoid

# ------------------------------------------------------------------------------------------------------------
# Clinical variables
# ------------------------------------------------------------------------------------------------------------


def _noisy(z: float, rng: np.random.Generator, weight: float) -> float:
    """A unit-variance variable correlated `weight` with z: how much of the signal a variable carries."""
    return weight * z + math.sqrt(1.0 - weight**2) * rng.standard_normal()


def _ordinal(value: float, cumulative: list[float]) -> int:
    """0-based category of a standard-normal `value` for the given cumulative prevalences."""
    from statistics import NormalDist

    cuts = [NormalDist().inv_cdf(p) for p in cumulative]
    return int(np.searchsorted(cuts, value))


def _binary_str(rng: np.random.Generator, p: float, missing: float = 0.0, missing_token: str = "x") -> str:
    if rng.random() < missing:
        return missing_token
    return "1" if rng.random() < p else "0"


GLEASON_BY_ISUP = {
    1: [(3, 3)],
    2: [(3, 4)],
    3: [(4, 3)],
    4: [(4, 4), (3, 5), (5, 3)],
    5: [(4, 5), (5, 4), (5, 5)],
}


def task1_clinical(z: float, rng: np.random.Generator) -> dict[str, Any]:
    """Prostatectomy clinical record (chimera-spec.md §2.1). Grade, PSA, pT, margins, SVI, LVI rise with z,
    like the CAPRA-S ingredients; each carries part of the signal (correlation 0.35-0.6)."""
    isup = 1 + _ordinal(_noisy(z, rng, 0.6), [0.15, 0.55, 0.80, 0.88])
    options = GLEASON_BY_ISUP[isup]
    weights = {1: [1.0], 2: [1.0], 3: [1.0], 4: [0.8, 0.1, 0.1], 5: [0.5, 0.35, 0.15]}[isup]
    primary, secondary = options[int(rng.choice(len(options), p=weights))]
    record: dict[str, Any] = {
        "age_at_prostatectomy": int(np.clip(round(64 + 1.5 * z + 6.5 * rng.standard_normal()), 42, 80)),
        "primary_gleason": primary,
        "secondary_gleason": secondary,
    }
    # A tertiary pattern exists in ~12% of RP specimens; otherwise it is reported as "x", null or left out.
    if max(primary, secondary) < 5 and rng.random() < 0.10 + 0.05 * max(z, 0.0):
        record["tertiary_gleason"] = 5
    else:
        style = rng.random()
        if style < 0.6:
            record["tertiary_gleason"] = "x"
        elif style < 0.8:
            record["tertiary_gleason"] = None
    record["ISUP"] = isup
    record["pre_operative_PSA"] = round(float(np.exp(1.95 + 0.6 * _noisy(z, rng, 0.5))), 1)
    stage_latent = _noisy(z, rng, 0.6)
    stage = _ordinal(stage_latent, [0.65, 0.87, 0.98])  # pT2, pT3a, pT3b, pT4
    if rng.random() < 0.01:
        pt = "x"
    elif stage == 0:
        pt = str(rng.choice(["2", "2a", "2b", "2c"], p=[0.3, 0.1, 0.1, 0.5]))
    elif stage == 1:
        pt = "3" if rng.random() < 0.05 else "3a"
    else:
        pt = "3b" if stage == 2 else str(rng.choice(["4", "4a"]))
    record["pT_stage"] = pt
    record["positive_lymph_nodes"] = _binary_str(rng, _sigmoid(-4.0 + 1.6 * stage_latent), missing=0.2)
    record["capsular_penetration"] = "x" if rng.random() < 0.03 else ("1" if stage >= 1 else "0")
    record["positive_surgical_margins"] = int(rng.random() < _sigmoid(-1.2 + 1.2 * _noisy(z, rng, 0.6)))
    record["invasion_seminal_vesicles"] = "x" if rng.random() < 0.03 else ("1" if stage >= 2 else "0")
    lvi = _binary_str(rng, _sigmoid(-2.0 + 1.2 * _noisy(z, rng, 0.4)), missing=0.08)
    if lvi != "x" and rng.random() < 0.15:
        lvi = f"{lvi}.0"  # "sometimes a float string" (DIAG)
    record["lymphovascular_invasion"] = lvi
    record["earlier_therapy"] = str(
        rng.choice(
            ["none", "unknown", "hormones", "radiotherapy", "radiotherapy+hormones", "cryotherapy"],
            p=[0.84, 0.08, 0.04, 0.02, 0.01, 0.01],
        )
    )
    return record


def task1_labels(time: float, event: int, rng: np.random.Generator) -> dict[str, Any]:
    """BCR as "0.0"/"1.0", follow-up in float months, and the leaking BCR_PSA (≥ 0.1 exactly at BCR)."""
    bcr_psa = (
        round(float(0.1 + rng.lognormal(-1.8, 0.8)), 2) if event else round(float(rng.uniform(0, 0.08)), 2)
    )
    return {"BCR": "1.0" if event else "0.0", "time_to_follow-up/BCR": round(time, 1), "BCR_PSA": bcr_psa}


def bladder_clinical(z: float, rng: np.random.Generator, task: int) -> dict[str, Any]:
    """Bladder TURBT record (chimera-spec.md §2.2/2.3): stage, grade, LVI, EORTC and variant rise with z.
    Task 3 uses the narrower category sets seen in its training data (no T2/T3, primary tumours, no "-1"
    for sex/reTUR/EORTC); missing categoricals are the string "-1", a missing instillation count is -1."""
    t3 = task == 3
    stage_latent = _noisy(z, rng, 0.45)
    if t3:
        stage = "T1HG" if rng.random() < _sigmoid(0.4 + 1.0 * stage_latent) else "TaHG"
    else:
        stage = ["TaHG", "T1HG", "T2HG", "T3HG"][_ordinal(stage_latent, [0.32, 0.92, 0.98])]
    if stage == "TaHG" or rng.random() < 0.1:
        substage = "-1"
    else:
        substage = "T1m" if rng.random() < _sigmoid(-0.6 + 1.0 * z) else "T1e"
    lvi_missing = rng.random() < 0.15
    lvi_yes = rng.random() < _sigmoid(-2.2 + 1.2 * _noisy(z, rng, 0.5))
    variant = "UCC + Variant" if rng.random() < _sigmoid(-2.4 + 0.8 * z) else "UCC"
    highest = stage != "TaHG" and (lvi_yes or variant != "UCC" or rng.random() < _sigmoid(-0.3 + 1.0 * z))
    record: dict[str, Any] = {
        "age": int(np.clip(round(69 + 1.0 * z + 9.0 * rng.standard_normal()), 35, 95)),
        "sex": "-1" if (not t3 and rng.random() < 0.02) else ("Male" if rng.random() < 0.8 else "Female"),
        "smoking": str(rng.choice(["Yes", "No", "-1"], p=[0.55, 0.25, 0.20])),
        "tumor": "Primary" if (t3 or rng.random() < 0.75) else "Recurrence",
        "stage": stage,
        "substage": substage,
        "grade": "G3" if rng.random() < _sigmoid(0.8 + 1.0 * _noisy(z, rng, 0.5)) else "G2",
        "reTUR": "-1" if (not t3 and rng.random() < 0.05) else ("Yes" if rng.random() < 0.5 else "No"),
        "LVI": "-1" if lvi_missing else ("Yes" if lvi_yes else "No"),
        "variant": variant,
        "EORTC": "-1" if (not t3 and rng.random() < 0.05) else ("Highest risk" if highest else "High risk"),
        "no_instillations": -1
        if rng.random() < 0.05
        else int(np.clip(round(19 - 2.0 * z + 9.0 * rng.standard_normal()), 1, 45)),
    }
    if t3:
        brs3 = rng.random() < _sigmoid(-1.1 + 0.8 * z)
        record["BRS"] = "BRS3" if brs3 else str(rng.choice(["BRS1", "BRS2"]))
    return record


@cache
def brs3_intercept(slope: float = 2.0, prevalence: float = BRS3_PREVALENCE) -> float:
    """Intercept a with E_z[sigmoid(a + slope z)] = prevalence for z ~ N(0, 1) (Gauss-Hermite, bisection)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(64)
    weights = weights / weights.sum()
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        mean = float(np.sum(weights / (1 + np.exp(-(mid + slope * nodes)))))
        lo, hi = (mid, hi) if mean < prevalence else (lo, mid)
    return (lo + hi) / 2


