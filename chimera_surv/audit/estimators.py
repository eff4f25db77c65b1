"""Named InterSHAP percentage estimators: the seeds mix several, and they are not interchangeable.

seed-methods.md §1.4-1.5: seed 000 reports its attention models with eq. 5 applied per patient, its MLP with a
ratio of means over main effects, and the original InterSHAP counts each interaction in both off-diagonal cells.
Mixing them reverses the seed's headline claim, and eq. 5 gives 33.3% (not 100%) on a pure XOR model. So every
figure this project reports names its estimator. All take the per-patient matrices Phi (N, M, M) from
``intershap.py``; Shapley totals are the row sums phi_i = sum_j Phi_ij, pair terms Phi_ij (i < j).

Zero-denominator convention (documented, never NaN): a ratio whose denominator is 0 (a patient, or a whole set,
on which the model is constant under masking) is 0% interaction and 0% shares: there is nothing to attribute.
``Estimate.n_null`` counts such patients for per-patient estimators.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chimera_surv.registry import Registry


@dataclass
class Estimate:
    """One estimator's global interaction percentage, modality shares and (if per patient) the values."""

    name: str
    interaction_pct: float
    shares_pct: dict[str, float]  # per modality, plus "interaction"; sum to 100 unless everything is null
    description: str
    sd_pct: float | None = None  # population SD across patients (per-patient estimators only)
    per_patient_pct: np.ndarray | None = None
    n_null: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, per_patient: bool = False) -> dict[str, Any]:
        out = {"name": self.name, "interaction_pct": self.interaction_pct, "sd_pct": self.sd_pct,
               "shares_pct": self.shares_pct, "n_null": self.n_null, "description": self.description}
        if per_patient and self.per_patient_pct is not None:
            out["per_patient_pct"] = self.per_patient_pct.tolist()
        return out


EstimatorFn = Callable[[np.ndarray, list[str]], Estimate]
ESTIMATORS: Registry[EstimatorFn] = Registry("intershap estimator")


def safe_ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den with 0 where den == 0 (the zero-denominator convention above)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    num, den = np.broadcast_arrays(num, den)
    return np.divide(num, den, out=np.zeros(num.shape), where=den > 0)


def _parts(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(|diag| (N,M), |pairs| once (N,P), |Shapley totals| (N,M))."""
    m = matrix.shape[1]
    iu, ju = np.triu_indices(m, k=1)
    return (np.abs(np.diagonal(matrix, axis1=1, axis2=2)), np.abs(matrix[:, iu, ju]),
            np.abs(matrix.sum(axis=2)))


def _pct(x: np.ndarray | float) -> float:
    return float(100.0 * np.asarray(x))


def _shares(modalities: list[str], main: np.ndarray, interaction: float) -> dict[str, float]:
    out = {m: _pct(v) for m, v in zip(modalities, main)}
    out["interaction"] = _pct(interaction)
    return out


def _per_patient(name: str, description: str, modalities: list[str], main: np.ndarray, inter: np.ndarray,
                 den: np.ndarray) -> Estimate:
    """Mean (and population SD) of per-patient ratios; shares are per-patient means too."""
    p = safe_ratio(inter, den)
    s = safe_ratio(main, den[:, None])
    n = len(p)
    return Estimate(name, _pct(p.mean()) if n else 0.0, _shares(modalities, s.mean(0) if n else
                    np.zeros(len(modalities)), p.mean() if n else 0.0), description,
                    sd_pct=_pct(p.std()) if n else 0.0, per_patient_pct=100.0 * p, n_null=int((den <= 0).sum()))


def _global(name: str, description: str, modalities: list[str], main: np.ndarray, inter: float) -> Estimate:
    den = float(main.sum() + inter)
    return Estimate(name, _pct(safe_ratio(inter, den)), _shares(modalities, safe_ratio(main, den),
                    float(safe_ratio(inter, den))), description)


@ESTIMATORS.register("orig_mean_abs")
def orig_mean_abs() -> EstimatorFn:
    """Original InterSHAP global (primary): A = mean_x|Phi|; sum_{i≠j} A_ij / sum_ij A_ij (both cells)."""

    def fn(matrix: np.ndarray, modalities: list[str]) -> Estimate:
        a = np.abs(matrix).mean(0) if len(matrix) else np.zeros((len(modalities),) * 2)
        off = float(a.sum() - np.trace(a))
        return _global("orig_mean_abs", "original InterSHAP global: mean over patients of |Phi_ij|, "
                       "interaction in both off-diagonal cells, ratio of sums", modalities, np.diag(a), off)

    return fn


@ESTIMATORS.register("orig_abs_of_mean")
def orig_abs_of_mean() -> EstimatorFn:
    """AAAI code's dataset metric: A = |mean_x Phi| (signs cancel; small for near-additive models)."""

    def fn(matrix: np.ndarray, modalities: list[str]) -> Estimate:
        a = np.abs(matrix.mean(0)) if len(matrix) else np.zeros((len(modalities),) * 2)
        off = float(a.sum() - np.trace(a))
        return _global("orig_abs_of_mean", "original InterSHAP, AAAI dataset variant: |mean over patients of "
                       "Phi_ij|, both off-diagonal cells", modalities, np.diag(a), off)

    return fn


@ESTIMATORS.register("orig_local_mean")
def orig_local_mean() -> EstimatorFn:
    """Mean over patients of local InterSHAP sum_{i≠j}|Phi_ij| / sum_ij |Phi_ij|."""

    def fn(matrix: np.ndarray, modalities: list[str]) -> Estimate:
        main, pairs, _ = _parts(matrix)
        inter = 2.0 * pairs.sum(1)
        return _per_patient("orig_local_mean", "original InterSHAP local values (both cells), mean over "
                            "patients", modalities, main, inter, main.sum(1) + inter)

    return fn


@ESTIMATORS.register("pair_once_local_mean")
def pair_once_local_mean() -> EstimatorFn:
    """intershap-python package: local ratio with each pair counted once, mean over patients."""

    def fn(matrix: np.ndarray, modalities: list[str]) -> Estimate:
        main, pairs, _ = _parts(matrix)
        inter = pairs.sum(1)
        return _per_patient("pair_once_local_mean", "local ratio, each pair counted once (intershap-python "
                            "package), mean over patients", modalities, main, inter, main.sum(1) + inter)

    return fn


@ESTIMATORS.register("e5_patient_mean")
def e5_patient_mean() -> EstimatorFn:
    """Seed 000 eq. 5 per patient with TOTAL Shapley values, then mean ± population SD (its Table 1)."""

    def fn(matrix: np.ndarray, modalities: list[str]) -> Estimate:
        _, pairs, totals = _parts(matrix)
        inter = pairs.sum(1)
        return _per_patient("e5_patient_mean", "seed 000 eq. 5 per patient: |phi_int| / (sum_i |phi_i| + "
                            "|phi_int|) with total Shapley values phi_i; mean and population SD (Table 1); "
                            "33.3% on pure XOR", modalities, totals, inter, totals.sum(1) + inter)

    return fn


@ESTIMATORS.register("e5_ratio_of_means")
def e5_ratio_of_means() -> EstimatorFn:
    """Seed 000 eq. 5 as printed: sums over patients in numerator and denominator (total Shapley values)."""

    def fn(matrix: np.ndarray, modalities: list[str]) -> Estimate:
        _, pairs, totals = _parts(matrix)
        return _global("e5_ratio_of_means", "seed 000 eq. 5 as printed: sum_x |phi_int| / sum_x (sum_i "
                       "|phi_i| + |phi_int|), total Shapley values", modalities, totals.sum(0),
                       float(pairs.sum()))

    return fn


@ESTIMATORS.register("self_ratio_of_means")
def self_ratio_of_means() -> EstimatorFn:
    """Seed code's apply_intershap (its MLP 4.82%): mean|phi_int| / (sum_i mean|Phi_ii| + mean|phi_int|)."""

    def fn(matrix: np.ndarray, modalities: list[str]) -> Estimate:
        main, pairs, _ = _parts(matrix)
        return _global("self_ratio_of_means", "seed code's ratio of means with main (self) effects, each "
                       "pair once: mean|Phi_ij| / (sum_i mean|Phi_ii| + sum_{i<j} mean|Phi_ij|)",
                       modalities, main.sum(0), float(pairs.sum()))

    return fn


PRIMARY_ESTIMATOR = "orig_mean_abs"


def estimate_all(matrix: np.ndarray, modalities: list[str]) -> dict[str, Estimate]:
    """Every registered estimator on the same matrices (so a report can never mix them silently)."""
    return {name: ESTIMATORS.build(name)(matrix, modalities) for name in ESTIMATORS.names()}


def matrix_from_two_modality_shapley(phi_a: np.ndarray, phi_b: np.ndarray, phi_int: np.ndarray) -> np.ndarray:
    """(N, 2, 2) matrices from the seed's eq. 2-4 values (total Shapley values and phi_int = Phi_12)."""
    phi_a, phi_b, phi_int = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (phi_a, phi_b, phi_int))
    out = np.empty((phi_a.size, 2, 2))
    out[:, 0, 0], out[:, 1, 1] = phi_a - phi_int, phi_b - phi_int
    out[:, 0, 1] = out[:, 1, 0] = phi_int
    return out
