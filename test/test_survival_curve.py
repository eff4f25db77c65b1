"""The stored per-patient survival curve (train/survival_curve.py → calibration.SurvivalCurve): without clipping it
is lifelines' own Cox-Breslow prediction; with clipping one far-out out-of-fold risk no longer flattens the slope,
inference clips to the stored bounds, and the setting re-exports without refitting (not in the config hash)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chimera_surv.survival.calibration import SurvivalCurve
from train.config import DEFAULTS, config_hash
from train.survival_curve import fit_survival_curve, survival_curve_clip, winsor_bounds


def _cohort(n: int = 120, beta: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    t_event = rng.exponential(30 * np.exp(-beta * risk))
    censor = rng.uniform(5, 60, n)
    return risk, np.minimum(t_event, censor), (t_event <= censor).astype(int)


def test_without_clipping_the_curve_is_lifelines_cox_breslow_prediction():
    from lifelines import CoxPHFitter

    risk, time, event = _cohort()
    curve = SurvivalCurve.from_dict(fit_survival_curve(risk, time, event, None).to_dict())
    assert curve.risk_range is None and "risk_range" not in curve.to_dict()  # old bundles' JSON, unchanged
    cph = CoxPHFitter(penalizer=1e-4).fit(pd.DataFrame({"risk": risk, "time": time, "event": event}), "time", "event")
    knots = cph.baseline_cumulative_hazard_.index.to_numpy()
    times = [float(knots[np.searchsorted(knots, t)]) for t in (6.0, 12.0, 24.0)]
    for r in (-1.5, 0.0, 2.0):
        expected = cph.predict_survival_function(pd.DataFrame({"risk": [r]}), times=times).to_numpy()[:, 0]
        np.testing.assert_allclose(curve.survival(r, times), expected, atol=1e-6)


def test_one_far_out_risk_flattens_the_unclipped_slope_but_not_the_clipped_one():
    risk, time, event = _cohort(n=90, beta=1.0, seed=3)
    clean = fit_survival_curve(risk, time, event, None).beta
    # one patient scored 8 SD high by an extrapolating member, with an ordinary outcome (an event at the median)
    risk_out = np.r_[risk, 8.0]
    time_out, event_out = np.r_[time, np.median(time)], np.r_[event, 1]
    flat = fit_survival_curve(risk_out, time_out, event_out, None)
    clipped = fit_survival_curve(risk_out, time_out, event_out, 4.0)
    assert flat.beta < 0.4 * clean  # the single point flattens the slope to a third
    assert clipped.beta > 1.8 * flat.beta and abs(clipped.beta - clean) < abs(flat.beta - clean)
    lo, hi = clipped.risk_range
    assert lo < np.min(risk) and np.max(risk) < hi < 8.0  # only the far-out risk is clipped


def test_inference_clips_to_the_stored_bounds_and_the_bounds_round_trip():
    risk, time, event = _cohort()
    curve = fit_survival_curve(np.r_[risk, 9.0], np.r_[time, 50.0], np.r_[event, 0], 3.0)
    again = SurvivalCurve.from_dict(curve.to_dict())
    lo, hi = again.risk_range
    assert again.to_dict() == curve.to_dict()
    assert again.survival(50.0, [12.0]) == again.survival(hi, [12.0])  # past the bound: the bound's curve
    assert again.survival(-50.0, [12.0]) == again.survival(lo, [12.0])
    assert again.survival(hi, [12.0])[0] < again.survival(0.0, [12.0])[0]  # inside: higher risk, lower S
    assert again.median(50.0) == again.median(hi)


@pytest.mark.parametrize("bounds", [[1.0], [2.0, 1.0], [0.0, float("nan")], ["a", 1.0]])
def test_a_damaged_risk_range_is_one_clear_error(bounds):
    doc = fit_survival_curve(*_cohort(), 3.0).to_dict()
    doc["risk_range"] = bounds
    with pytest.raises(ValueError, match="risk_range"):
        SurvivalCurve.from_dict(doc)


def test_bounds_need_spread_and_the_setting_is_export_only():
    assert winsor_bounds(np.zeros(20), 4.0) is None  # no spread to measure: no clipping
    assert winsor_bounds(np.arange(10.0), None) is None
    lo, hi = winsor_bounds(np.arange(-5.0, 6.0), 2.0)  # median 0, MAD 3 → robust SD 4.4478
    assert (lo, hi) == pytest.approx((-8.8956, 8.8956))
    assert survival_curve_clip({}) == DEFAULTS["survival_curve"]["clip_mad"]
    changed = {**DEFAULTS, "survival_curve": {"clip_mad": 2.5}}
    assert config_hash(changed) == config_hash(DEFAULTS)  # re-exports from the members already fitted


def test_the_export_note_names_far_out_risks_only_when_they_are_there_and_unclipped():
    from train.survival_curve import far_out_note

    risk, time, event = _cohort(n=90, beta=1.0, seed=3)
    assert far_out_note(risk, time, event, fit_survival_curve(risk, time, event, None)) is None  # a normal spread: silent
    risk_out = np.r_[risk, 8.0]
    time_out, event_out = np.r_[time, np.median(time)], np.r_[event, 1]
    note = far_out_note(risk_out, time_out, event_out, fit_survival_curve(risk_out, time_out, event_out, None))
    assert note is not None and "1 out-of-fold risk(s)" in note and "survival_curve.clip_mad: 4" in note
    flat, clipped = (fit_survival_curve(risk_out, time_out, event_out, k).beta for k in (None, 4.0))
    assert f"slope is {flat:.2f}" in note and f"would be {clipped:.2f}" in note
    assert far_out_note(risk_out, time_out, event_out, fit_survival_curve(risk_out, time_out, event_out, 4.0)) is None  # already bounded


def test_the_container_keeps_the_months_when_the_stored_curve_is_damaged():
    """inference.py's RESULT details: a damaged curve says so in one field instead of costing the prediction."""
    from types import SimpleNamespace

    from chimera_surv.predict import _meaning

    doc = fit_survival_curve(*_cohort(), 3.0).to_dict()
    good = SimpleNamespace(meta={"survival_curve": doc, "horizons_months": [12.0]}, members=[], task_id=1,
                           output_kind="months")
    assert isinstance(_meaning(good, 40.0, 0.3, ["clinical"])["survival"], dict)
    bad = SimpleNamespace(meta={"survival_curve": {**doc, "risk_range": [3.0, 1.0]}, "horizons_months": [12.0]},
                          members=[], task_id=1, output_kind="months")
    said = _meaning(bad, 40.0, 0.3, ["clinical"])
    assert said["survival"].startswith("not available: ValueError: survival curve: risk_range")
