"""Fit the per-patient survival curve a bundle stores (chimera_surv.survival.calibration.SurvivalCurve).

A one-covariate Cox model with a Breslow baseline on the out-of-fold ensemble risk (lifelines). The risk is first
winsorised to median ± `clip_mad` robust SDs (1.4826 × the median absolute deviation) of the risks it is fitted on,
and the bounds are stored so that inference clips the same way. Why: one member's fold can give a few far-out
out-of-fold risks (a linear model extrapolating on an unusual patient, 8 SD in one synthetic Task 1 draw); the
single slope then flattens to fit them and every patient's curve collapses toward the Kaplan-Meier curve
(benchmarks/results/survival_curve_clip/summary.json). The export and the training report's cross-fitted
calibration both call this, so the report judges the curve that ships.
"""

from __future__ import annotations

import numpy as np

from chimera_surv.survival.calibration import SurvivalCurve

COX_PENALIZER = 1e-4  # a touch of ridge so a separable fold does not diverge
ROBUST_SD = 1.4826  # MAD → SD under a normal distribution


def winsor_bounds(risk: np.ndarray, clip_mad: float | None) -> tuple[float, float] | None:
    """(median − k·robust SD, median + k·robust SD) of `risk`, or None (no clipping: `clip_mad` None, or the
    risks have no spread to measure)."""
    if clip_mad is None:
        return None
    risk = np.asarray(risk, dtype=float)
    centre = float(np.median(risk))
    spread = ROBUST_SD * float(np.median(np.abs(risk - centre)))
    if not (np.isfinite(spread) and spread > 1e-12):
        return None
    return centre - clip_mad * spread, centre + clip_mad * spread


def fit_survival_curve(risk: np.ndarray, time: np.ndarray, event: np.ndarray,
                       clip_mad: float | None) -> SurvivalCurve:
    """The Cox-Breslow curve of `risk` (higher = worse) on (time, event), fitted on the winsorised risk."""
    import pandas as pd
    from lifelines import CoxPHFitter

    risk = np.asarray(risk, dtype=float)
    bounds = winsor_bounds(risk, clip_mad)
    bounded = risk if bounds is None else np.clip(risk, *bounds)
    centre = float(np.mean(bounded))
    frame = pd.DataFrame({"risk": bounded - centre, "time": np.asarray(time, dtype=float),
                          "event": np.asarray(event).astype(int)})
    if constant_risk(bounded):  # nothing to regress on (lifelines divides by its SD): the cohort's own curve
        from lifelines import NelsonAalenFitter

        hazard = NelsonAalenFitter().fit(frame["time"], frame["event"]).cumulative_hazard_
        slope = 0.0
    else:
        cph = CoxPHFitter(penalizer=COX_PENALIZER).fit(frame, "time", "event")
        hazard = cph.baseline_cumulative_hazard_  # at the centre (risk 0 after centring)
        slope = float(cph.params_["risk"])
    keep = hazard.index.to_numpy() > 0
    return SurvivalCurve(slope, centre, hazard.index.to_numpy()[keep].tolist(),
                         hazard.iloc[:, 0].to_numpy()[keep].tolist(), float(np.max(time)), bounds)


def constant_risk(risk: np.ndarray) -> bool:
    """The out-of-fold risk ranks nobody (every model constant, e.g. a handful of events per training part)."""
    risk = np.asarray(risk, dtype=float)
    return float(np.ptp(risk)) <= 1e-9 * max(1.0, float(np.max(np.abs(risk))))


def survival_curve_clip(config: dict) -> float | None:
    """`survival_curve.clip_mad` of a training config (the default when the section is absent)."""
    from train.config import DEFAULTS

    section = config.get("survival_curve") or DEFAULTS["survival_curve"]
    return section.get("clip_mad")


FAR_OUT_MAD = 4.0  # what the export's note counts as far out (robust SDs from the median)
SLOPE_CHANGE = 0.25  # the note speaks only when clipping them would move the slope by this fraction or more


def far_out_note(risk: np.ndarray, time: np.ndarray, event: np.ndarray, curve: SurvivalCurve) -> str | None:
    """One line for the training log when unclipped out-of-fold risks lie beyond median ± 4 robust SDs and bounding
    them would move the S(t) slope by ≥ 25 %: both slopes, so the user can judge
    (benchmarks/results/survival_curve_clip/). None otherwise, or when the curve is already clipped."""
    bounds = winsor_bounds(risk, FAR_OUT_MAD)
    if bounds is None or curve.risk_range is not None:
        return None
    risk = np.asarray(risk, dtype=float)
    outside = risk[(risk < bounds[0]) | (risk > bounds[1])]
    if not outside.size:
        return None
    clipped = fit_survival_curve(risk, time, event, FAR_OUT_MAD).beta
    if abs(clipped - curve.beta) < SLOPE_CHANGE * max(abs(curve.beta), 0.1):
        return None
    spread = (bounds[1] - bounds[0]) / (2 * FAR_OUT_MAD)
    worst = float(np.max(np.abs(outside - np.median(risk)))) / spread
    return (f"survival curve: {outside.size} out-of-fold risk(s) lie beyond median ± {FAR_OUT_MAD:g} robust SD (the "
            f"farthest at {worst:.1f}); the per-patient S(t) slope is {curve.beta:.2f} per risk unit with them and "
            f"would be {clipped:.2f} with `survival_curve.clip_mad: {FAR_OUT_MAD:g}` (export-only; docs/training.md)")
