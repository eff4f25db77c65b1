"""Evaluation metrics: the organisers' Harrell C (sksurv) made safe, Uno C, IBS, td-AUC, bootstrap CIs.

The challenge scores ``concordance_index_censored(event, time, -predicted_time)``; here ``risk`` is
higher = worse, so ``harrell_c(event, time, risk)`` is that exact call with ``risk = -predicted_time``.
sksurv has two edge cases (ecosystem.md §3): no comparable pair *raises* (NoComparablePairException, or
ValueError when every sample is censored or n < 2), and only-tied-event-time pairs *return NaN* with a
warning. All become ``undefined``: NaN by default, or ``UndefinedMetric`` with ``on_undefined="raise"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Literal

import numpy as np
from sksurv.exceptions import NoComparablePairException
from sksurv.metrics import (
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)

OnUndefined = Literal["nan", "raise"]


class UndefinedMetric(ValueError):
    """The metric has no comparable pair (or only tied event times) on these data."""


def _arrays(event, time, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    event = np.asarray(event).astype(bool).reshape(-1)
    time = np.asarray(time, dtype=np.float64).reshape(-1)
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    if not (event.size == time.size == score.size):
        raise ValueError(f"event/time/score sizes differ: {event.size}, {time.size}, {score.size}")
    if not (np.isfinite(time).all() and np.isfinite(score).all()):
        raise ValueError("time and score must be finite")
    return event, time, score


def _surv(event: np.ndarray, time: np.ndarray) -> np.ndarray:
    out = np.empty(len(event), dtype=[("event", bool), ("time", np.float64)])
    out["event"], out["time"] = event, time
    return out


def harrell_c(event, time, risk, on_undefined: OnUndefined = "nan") -> float:
    """Harrell's C of ``risk`` (higher = worse) — the organisers' sksurv call, tied_tol 1e-8."""
    event, time, risk = _arrays(event, time, risk)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = float(concordance_index_censored(event, time, risk)[0])
    except (NoComparablePairException, ValueError) as exc:  # also "All samples are censored", n < 2
        if on_undefined == "raise":
            raise UndefinedMetric(f"no comparable pair: {exc}") from exc
        return float("nan")
    if not np.isfinite(value) and on_undefined == "raise":
        raise UndefinedMetric("only tied event times are comparable")
    return value


def c_index_of_times(event, time, predicted_time) -> float:
    """The challenge's score for a submitted *time* (higher time = lower risk)."""
    return harrell_c(event, time, -np.asarray(predicted_time, dtype=np.float64))


def uno_c(train_event, train_time, event, time, risk, tau: float | None = None,
          on_undefined: OnUndefined = "nan") -> float:
    """Uno's IPCW C (censoring distribution from the training split), truncated at ``tau``."""
    event, time, risk = _arrays(event, time, risk)
    tr_e, tr_t, _ = _arrays(train_event, train_time, np.zeros(len(np.asarray(train_time))))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = float(concordance_index_ipcw(_surv(tr_e, tr_t), _surv(event, time), risk, tau=tau)[0])
    except (NoComparablePairException, ValueError, ZeroDivisionError) as exc:
        if on_undefined == "raise":
            raise UndefinedMetric(str(exc)) from exc
        return float("nan")
    return value


def integrated_brier(train_event, train_time, event, time, survival: np.ndarray, times: np.ndarray) -> float:
    """Integrated Brier score of survival curves ``survival[i, k] = S_i(times[k])`` (IPCW, sksurv)."""
    tr_e, tr_t, _ = _arrays(train_event, train_time, np.zeros(len(np.asarray(train_time))))
    event, time, _ = _arrays(event, time, np.zeros(len(np.asarray(time))))
    survival = np.asarray(survival, dtype=np.float64)
    return float(integrated_brier_score(_surv(tr_e, tr_t), _surv(event, time), survival, np.asarray(times)))


def td_auc(train_event, train_time, event, time, risk, times: np.ndarray) -> tuple[np.ndarray, float]:
    """Cumulative/dynamic AUC at ``times`` and its mean (sksurv ``cumulative_dynamic_auc``)."""
    tr_e, tr_t, _ = _arrays(train_event, train_time, np.zeros(len(np.asarray(train_time))))
    event, time, risk = _arrays(event, time, risk)
    auc, mean_auc = cumulative_dynamic_auc(_surv(tr_e, tr_t), _surv(event, time), risk, np.asarray(times))
    return np.asarray(auc, dtype=np.float64), float(mean_auc)


def km_survival_grid(train_event, train_time, times: np.ndarray, n: int) -> np.ndarray:
    """The training KM curve at ``times`` repeated for n patients (the IBS reference model)."""
    from chimera_surv.survival.calibration import kaplan_meier, step_value

    km_t, km_s = kaplan_meier(np.asarray(train_time, dtype=np.float64), np.asarray(train_event).astype(bool))
    return np.tile(step_value(km_t, km_s, np.asarray(times, dtype=np.float64)), (n, 1))


def bootstrap_ci(metric: Callable[..., float], *arrays, n_boot: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float, float]:
    """(point, low, high): percentile bootstrap over patients; undefined (NaN) resamples are skipped."""
    arrays = tuple(np.asarray(a) for a in arrays)
    n = len(arrays[0])
    point = float(metric(*arrays))
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        value = metric(*(a[idx] for a in arrays))
        if np.isfinite(value):
            stats.append(value)
    if not stats:
        return point, float("nan"), float("nan")
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return point, float(low), float(high)
