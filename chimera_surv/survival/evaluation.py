"""The full evaluation of one set of test predictions: Harrell C, Uno C, td-AUC, IBS, D-calibration, CIs.

One call gives every figure a training report or benchmark prints, so all of them are computed the same way.
The IPCW metrics (Uno C, td-AUC, IBS) estimate the censoring distribution on the *training* split, and
scikit-survival raises when a test time lies past the longest training follow-up ("time must be smaller than
largest observed time point") or where that censoring curve is 0. Here such test patients are censored at the
longest training follow-up (``cutoff``) for those metrics only, and horizons at or past it are dropped; both are
said in ``notes``. Harrell C and D-calibration use the test data as given. Undefined figures are ``None``, never
NaN, so the dict is valid JSON.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chisquare

from chimera_surv.survival.metrics import (
    bootstrap_ci,
    harrell_c,
    integrated_brier,
    km_survival_grid,
    td_auc,
    uno_c,
)

N_DCAL_BINS = 10


def _vector(name: str, value, n: int | None = None) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if n is not None and arr.size != n:
        raise ValueError(f"{name}: expected {n} values, got {arr.size}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def _finite_or_none(value) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def survival_at(surv: np.ndarray, surv_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    """S_i(times[i]) from a step curve on ``surv_times`` (1 before the first grid time, last value after)."""
    idx = np.searchsorted(surv_times, times, side="right") - 1
    out = np.ones(len(times))
    inside = idx >= 0
    out[inside] = surv[np.flatnonzero(inside), idx[inside]]
    return out


def d_calibration(time, event, surv, surv_times, n_bins: int = N_DCAL_BINS) -> dict:
    """Haider et al. (2020) D-calibration: S_i(t_i) should be uniform on [0, 1].

    An event puts its whole weight in the bin holding S_i(t_i); a patient censored with s = S_i(c_i) is spread
    over that bin ((s - lower) / s) and every bin below it (width / s), since the true S(T) lies in [0, s].
    A censored patient with s = 0 goes to the lowest bin. Chi-square test against equal counts.
    """
    time = _vector("test_time", time)
    event = np.asarray(event).astype(bool).reshape(-1)
    s = np.clip(survival_at(np.asarray(surv, dtype=np.float64), np.asarray(surv_times, dtype=np.float64), time),
                0.0, 1.0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    width = 1.0 / n_bins
    counts = np.zeros(n_bins)
    which = np.minimum((s * n_bins).astype(int), n_bins - 1)
    np.add.at(counts, which[event], 1.0)
    for si, b in zip(s[~event], which[~event]):
        if si <= 0.0:
            counts[0] += 1.0
            continue
        counts[b] += (si - edges[b]) / si
        counts[:b] += width / si
    stat, p = chisquare(counts) if counts.sum() > 0 else (float("nan"), float("nan"))
    return {"statistic": _finite_or_none(stat), "p_value": _finite_or_none(p),
            "bins": [round(float(c), 6) for c in counts]}


def _check_surv(surv, surv_times, n: int) -> tuple[np.ndarray, np.ndarray]:
    if surv_times is None:
        raise ValueError("surv_times: required when surv is given")
    surv_times = _vector("surv_times", surv_times)
    surv = np.asarray(surv, dtype=np.float64)
    if surv.shape != (n, surv_times.size):
        raise ValueError(f"surv: expected shape ({n}, {surv_times.size}), got {surv.shape}")
    if not np.isfinite(surv).all():
        raise ValueError("surv: contains NaN or infinite values")
    if np.any(np.diff(surv_times) <= 0):
        raise ValueError("surv_times: must be strictly increasing")
    return surv, surv_times


def _ibs_on(tr_e, tr_t, e, t, surv, surv_times) -> float:
    """IBS over the grid times inside the test follow-up [min, max); NaN when fewer than two remain."""
    keep = (surv_times >= t.min()) & (surv_times < t.max())
    if keep.sum() < 2:
        return float("nan")
    try:
        return integrated_brier(tr_e, tr_t, e, t, surv[:, keep], surv_times[keep])
    except ValueError:
        return float("nan")


def _auc_at(tr_e, tr_t, e, t, risk, horizon: float) -> float:
    if not (t.min() <= horizon < t.max()) or not e[t <= horizon].any():
        return float("nan")
    try:
        return float(td_auc(tr_e, tr_t, e, t, risk, np.array([horizon]))[0][0])
    except ValueError:
        return float("nan")


def evaluate_survival(train_time, train_event, test_time, test_event, risk, surv=None, surv_times=None,
                      horizons=None, n_boot: int = 200, seed: int = 0, time_unit: str = "") -> dict:
    """Every evaluation figure for test ``risk`` (higher = worse) and optional survival curves ``surv``.

    ``surv[i, k] = S_i(surv_times[k])``. ``horizons`` default to the 25/50/75th centiles of the test event
    times. ``ci95`` is a percentile bootstrap over test patients (same resamples for every metric).
    ``time_unit`` (e.g. "months") follows every time the notes print.
    """
    unit = f" {time_unit}" if time_unit else ""
    tr_t = _vector("train_time", train_time)
    tr_e = np.asarray(train_event).astype(bool).reshape(-1)
    if tr_e.size != tr_t.size:
        raise ValueError(f"train_event: expected {tr_t.size} values, got {tr_e.size}")
    t = _vector("test_time", test_time)
    e = np.asarray(test_event).astype(bool).reshape(-1)
    if e.size != t.size:
        raise ValueError(f"test_event: expected {t.size} values, got {e.size}")
    risk = _vector("risk", risk, t.size)
    if surv is not None:
        surv, surv_times = _check_surv(surv, surv_times, t.size)
    notes: list[str] = []

    cutoff = float(tr_t.max())
    past = t >= cutoff
    t_ipcw = np.minimum(t, cutoff)
    e_ipcw = e & ~past
    if past.any():
        notes.append(f"{int(past.sum())} test patient(s) followed to or past the longest training follow-up "
                     f"({cutoff:.4g}{unit}) were censored there for Uno C, td-AUC and IBS")

    if horizons is None:
        horizons = np.quantile(t[e], [0.25, 0.5, 0.75]) if e.any() else np.array([])
    kept = []
    for h in sorted({float(h) for h in np.atleast_1d(horizons)}):
        if h >= cutoff:
            notes.append(f"horizon {h:g}{unit} dropped: at or past the longest training follow-up ({cutoff:.4g}{unit})")
        elif not (t_ipcw.min() <= h < t_ipcw.max()):
            notes.append(f"horizon {h:g}{unit} dropped: outside the test follow-up [{t_ipcw.min():.4g}, {t_ipcw.max():.4g}){unit}")
        else:
            kept.append(h)

    def uno(tt, ee, rr):
        return uno_c(tr_e, tr_t, ee, tt, rr, tau=cutoff)

    metrics = {
        "harrell_c": ((t, e, risk), lambda tt, ee, rr: harrell_c(ee, tt, rr)),
        "uno_c": ((t_ipcw, e_ipcw, risk), uno),
    }
    for h in kept:
        metrics[f"td_auc@{h:g}"] = ((t_ipcw, e_ipcw, risk),
                                    lambda tt, ee, rr, h=h: _auc_at(tr_e, tr_t, ee, tt, rr, h))
    if surv is not None:
        metrics["ibs"] = ((t_ipcw, e_ipcw, surv), lambda tt, ee, ss: _ibs_on(tr_e, tr_t, ee, tt, ss, surv_times))
        km = km_survival_grid(tr_e, tr_t, surv_times, t.size)
        metrics["ibs_km"] = ((t_ipcw, e_ipcw, km), lambda tt, ee, ss: _ibs_on(tr_e, tr_t, ee, tt, ss, surv_times))

    point, ci95 = {}, {}
    for name, (arrays, fn) in metrics.items():
        if n_boot > 0:
            value, lo, hi = bootstrap_ci(fn, *arrays, n_boot=n_boot, seed=seed)
        else:
            value, lo, hi = fn(*arrays), float("nan"), float("nan")
        point[name] = _finite_or_none(value)
        ci95[name] = [_finite_or_none(lo), _finite_or_none(hi)] if np.isfinite(lo) and np.isfinite(hi) else None
        if point[name] is None:
            notes.append(f"{name} undefined on these test data (no comparable pair or too little follow-up)")

    return {
        "harrell_c": point["harrell_c"],
        "uno_c": point["uno_c"],
        "td_auc": {h: point[f"td_auc@{h:g}"] for h in kept},
        "ibs": point.get("ibs"),
        "ibs_km": point.get("ibs_km"),
        "d_calibration": d_calibration(t, e, surv, surv_times) if surv is not None else None,
        "ci95": ci95,
        "horizons": kept,
        "cutoff": cutoff,
        "n_test": int(t.size),
        "n_events": int(e.sum()),
        "notes": notes,
    }
