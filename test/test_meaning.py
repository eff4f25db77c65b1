"""What a predicted number means (chimera_surv/meaning.py) and the per-patient survival curve a bundle stores
(calibration.SurvivalCurve, fitted at export): S(t) equals lifelines' own prediction, and a bundle exported before
curves were kept says so instead of inventing one."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from chimera_surv.meaning import describe, value_meaning
from chimera_surv.predict_cohort import survival_columns
from chimera_surv.survival.calibration import SurvivalCurve
from chimera_surv.tasks import TASKS


@pytest.fixture(scope="module")
def fitted():
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(0)
    risk = rng.normal(size=200)
    t_event = rng.exponential(30 * np.exp(-0.8 * risk))
    censor = rng.uniform(5, 60, 200)
    time, event = np.minimum(t_event, censor), (t_event <= censor).astype(int)
    cph = CoxPHFitter(penalizer=1e-4).fit(pd.DataFrame({"risk": risk, "time": time, "event": event}), "time", "event")
    hazard = cph.baseline_cumulative_hazard_
    curve = SurvivalCurve(float(cph.params_["risk"]), float(np.mean(risk)), hazard.index.tolist(),
                          hazard.iloc[:, 0].tolist(), float(time.max()))
    return cph, curve


def test_the_stored_curve_is_the_cox_breslow_prediction(fitted):
    cph, curve = fitted
    curve = SurvivalCurve.from_dict(curve.to_dict())  # through the bundle's JSON
    knots = cph.baseline_cumulative_hazard_.index.to_numpy()
    times = [float(knots[np.searchsorted(knots, t)]) for t in (6.0, 12.0, 24.0)]  # lifelines interpolates between
    for r in (-1.5, 0.0, 2.0):
        expected = cph.predict_survival_function(pd.DataFrame({"risk": [r]}), times=times).to_numpy()[:, 0]
        np.testing.assert_allclose(curve.survival(r, times), expected, atol=1e-6)
    assert curve.survival(2.0, [12.0])[0] < curve.survival(-1.5, [12.0])[0]  # higher risk, lower survival
    median = curve.median(2.0)
    assert median is not None and curve.survival(2.0, [median])[0] <= 0.5
    assert curve.median(-30.0) is None  # never falls to 0.5 within the data: no invented median


def test_units_and_meaning_of_each_task():
    assert value_meaning(3, "months")["unit"] == "months" and "bladder cancer recurrence" in \
        value_meaning(3, "months")["meaning"]
    assert value_meaning(2, "probability") == {"unit": "probability (0-1)",
                                               "meaning": "predicted probability of BRS3 (the high-risk molecular "
                                                          "subtype)"}


def test_an_old_bundle_says_it_has_no_curve(fitted):
    _, curve = fitted
    result = SimpleNamespace(value=80.0, risk=0.3, used=["clinical"])
    old = SimpleNamespace(meta={}, members=[], task_id=3, output_kind="months")
    assert survival_columns(old, TASKS[3], result) == {"median_months": "", "months_past_follow_up": "unknown"}
    assert "not stored" in describe(old, 80.0, 0.3, ["clinical"])["survival"]
    new = SimpleNamespace(meta={"survival_curve": curve.to_dict(), "horizons_months": [12.0, 24.0]}, members=[],
                          task_id=3, output_kind="months")
    columns = survival_columns(new, TASKS[3], result)
    assert list(columns)[:2] == ["S(12 months)", "S(24 months)"] and columns["S(12 months)"] > columns["S(24 months)"]
    assert columns["months_past_follow_up"] == ("yes" if 80.0 > curve.max_follow_up else "no")


def test_the_result_line_flags_a_time_past_the_longest_follow_up(fitted):
    _, curve = fitted
    new = SimpleNamespace(meta={"survival_curve": curve.to_dict(), "horizons_months": [12.0]}, members=[],
                          task_id=3, output_kind="months")
    assert describe(new, curve.max_follow_up + 5.0, 0.0, ["clinical"])["past_follow_up"] is True
    assert describe(new, curve.max_follow_up / 2, 0.0, ["clinical"])["past_follow_up"] is False
