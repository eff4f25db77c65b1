"""Risk → months maps: strictly decreasing and tie-free (km_quantile) vs the seed's stepwise map, JSON only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import REFERENCE
from hypothesis import given, settings
from hypothesis import strategies as st

from chimera_surv.survival.calibration import (
    CALIBRATIONS,
    calibration_from_dict,
    count_tied,
    kaplan_meier,
)
from chimera_surv.survival.metrics import c_index_of_times, harrell_c

BLADDER = REFERENCE / "chimera" / "bladder-rec.csv"


def _stand_in_outcomes() -> tuple[np.ndarray, np.ndarray]:
    """176 Task 3-like outcomes (months) from the synthetic generator, whose censoring is the parametric stand-in."""
    from chimera_surv.synthetic import CohortOptions, make_cohort

    cohort = make_cohort(3, 176, seed=5, options=CohortOptions(with_images=False, with_rna=False))
    return np.array([p.time for p in cohort], dtype=float), np.array([p.event for p in cohort], dtype=int)


# Every test of realistic follow-up runs on the stand-in; the real outcomes are an optional reference run.
@pytest.fixture(scope="module", params=["stand_in", pytest.param("real", marks=pytest.mark.reference)])
def bladder(request):
    if request.param == "stand_in":
        return _stand_in_outcomes()
    df = pd.read_csv(BLADDER)
    return df.Time.to_numpy(dtype=float), df.Progression.to_numpy(dtype=int)


def _fitted(name, bladder, seed=0, n_train=148):
    t, e = bladder
    rng = np.random.default_rng(seed)
    risks = rng.normal(size=len(t))
    idx = rng.permutation(len(t))[:n_train]
    return CALIBRATIONS.build(name).fit(risks[idx], t[idx], e[idx]), risks


def test_kaplan_meier_equals_lifelines(bladder):
    from lifelines import KaplanMeierFitter

    t, e = bladder
    km_t, km_s = kaplan_meier(t, e)
    ref = KaplanMeierFitter().fit(t, e).survival_function_
    assert np.allclose(km_s, ref.loc[km_t].to_numpy().ravel())


risk_lists = st.lists(st.floats(-30, 30, allow_nan=False), min_size=2, max_size=60, unique=True)


@settings(max_examples=150, deadline=None, database=None)
@given(risks=risk_lists, seed=st.integers(0, 5))
def test_km_quantile_distinct_risks_give_distinct_reversed_times(bladder, risks, seed):
    cal, _ = _fitted("km_quantile", bladder, seed)
    r = np.asarray(risks)
    r = r[np.argsort(r)]
    keep = np.r_[True, np.diff(r) > 1e-9 * np.maximum(1.0, np.abs(r[1:]))]  # distinct beyond rounding
    r = r[keep]
    times = cal.predict(r)
    assert np.isfinite(times).all() and (times >= 0).all()
    assert (np.diff(times) < 0).all()  # exactly reversed order, no tie
    assert np.array_equal(np.argsort(-times, kind="stable"), np.arange(len(r)))


@settings(max_examples=50, deadline=None, database=None)
@given(train=st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=40),
       n_events=st.integers(0, 40))
def test_km_quantile_degenerate_training_sets_still_monotone(train, n_events):
    """Duplicated training risks, a constant risk, no events at all: still strictly decreasing."""
    n = len(train)
    times = np.linspace(1.0, 50.0, n)
    events = (np.arange(n) < min(n_events, n)).astype(int)
    cal = CALIBRATIONS.build("km_quantile").fit(np.round(train, 1), times, events)
    out = cal.predict(np.linspace(-10, 10, 101))
    assert np.isfinite(out).all() and (out >= 0).all() and (np.diff(out) < 0).all()


def test_km_quantile_events_at_time_zero_keep_the_highest_risks_apart():
    """Training events at t = 0 once duplicated the t = 0 knot: every risk whose quantile lay above S(0) mapped
    onto t = 0, separated only by the 1e-6-month tie-breaker. Now the knots are strictly increasing and the top
    risks spread over (0, first positive event time)."""
    times = np.r_[np.zeros(10), np.linspace(2.0, 60.0, 50)]
    events = np.r_[np.ones(10), np.arange(50) % 2].astype(int)  # S(0) = 50/60: the top sixth of risks at t ≈ 0
    train = np.random.default_rng(0).normal(size=60)
    cal = CALIBRATIONS.build("km_quantile").fit(train, times, events)
    assert cal.km_t[0] == 0.0 and (np.diff(cal.km_t) > 0).all()
    top = np.sort(train)[-8:]  # above the 5/6 quantile
    out = cal.predict(top)
    assert (np.diff(out) < 0).all()
    assert out.max() - out.min() > 0.1  # spread in months, not by the tie-breaker (< 1e-6)
    first = times[(events == 1) & (times > 0)].min()
    assert (out > 0).all() and out.max() < first  # before the first positive event time
    assert harrell_c(events, times, train) == pytest.approx(c_index_of_times(events, times, cal.predict(train)))


def test_km_quantile_follows_the_km_curve(bladder):
    """A risk at the training median maps to the time where the KM curve crosses 0.5 (or its tail)."""
    t, e = bladder
    rng = np.random.default_rng(1)
    risks = rng.normal(size=len(t))
    cal = CALIBRATIONS.build("km_quantile").fit(risks, t, e)
    km_t, km_s = kaplan_meier(t, e)
    q = np.quantile(risks, 0.8)  # u ≈ 0.8 → time where S ≈ 0.8
    target = km_t[np.argmin(np.abs(km_s - 0.8))]
    assert abs(cal.predict([q])[0] - target) < 6.0
    assert harrell_c(e, t, risks) == pytest.approx(c_index_of_times(e, t, cal.predict(risks)))


def test_seed002_map_reproduces_its_ties_and_km_quantile_removes_them(bladder):
    """On Task 3-like outcomes (stand-in; the real ones as a reference run) with random risks: count ties."""
    t, e = bladder
    ties = {}
    for name in ("km_quantile", "km_stepwise_seed002"):
        cal, risks = _fitted(name, bladder)
        times = cal.predict(risks)
        ties[name] = count_tied(times)
        if name == "km_stepwise_seed002":
            # monotone non-increasing; the plateau at the KM minimum (S never below ~0.56) is one big tie
            order = np.argsort(risks)
            assert (np.diff(times[order]) <= 0).all()
            _, counts = np.unique(times, return_counts=True)
            assert counts.max() > 0.4 * len(t)
            # the tied times score 0.5 per pair: the C-index moves toward chance
            assert abs(c_index_of_times(e, t, times) - 0.5) < abs(harrell_c(e, t, risks) - 0.5)
    assert ties["km_quantile"] == 0
    assert ties["km_stepwise_seed002"] > 0.5 * len(t)


def test_seed002_formula_by_hand():
    cal = CALIBRATIONS.build("km_stepwise_seed002")
    cal.km_times, cal.km_probs, cal.train_risks = [0.0, 10.0, 20.0], [1.0, 0.8, 0.6], [0.0, 1.0, 2.0, 3.0]
    # r=2.5: rank = 1 + #{≥2.5}=2, p = 1 − 1/5 = 0.8 → t=10; r=−1: rank 5, p=0.2 → nearest 0.6 → 20
    assert cal.predict([2.5, -1.0, 9.0]).tolist() == [10.0, 20.0, 0.0]


@pytest.mark.parametrize("name", ["km_quantile", "km_stepwise_seed002", "deephit_expected_time", "sigmoid",
                                  "platt"])
def test_json_round_trip(bladder, name):
    t, e = bladder
    risks = np.random.default_rng(2).normal(size=len(t))
    cal = CALIBRATIONS.build(name).fit(risks, t, e)
    d = json.loads(json.dumps(cal.to_dict()))
    assert d["name"] == name
    for v in d.values():
        assert isinstance(v, (str, float, list)) and (not isinstance(v, list) or all(isinstance(x, float) for x in v))
    again = calibration_from_dict(d)
    assert np.array_equal(again.predict(risks), cal.predict(risks))


def test_deephit_expected_time_is_positive_and_decreasing():
    cal = CALIBRATIONS.build({"name": "deephit_expected_time", "scale": 8.1667, "offset": 5.0})
    r = np.linspace(-40, 5, 200)  # risk = −E[bin]; positive risks only by numerical accident
    out = cal.predict(r)
    assert (out > 0).all() and (np.diff(out) < 0).all()
    assert cal.predict([-3.0])[0] == pytest.approx(5.0 + 3 * 8.1667)


def test_probability_calibrations():
    x = np.linspace(-3, 3, 400)
    y = (np.random.default_rng(0).random(400) < 1 / (1 + np.exp(-(2 * x - 1)))).astype(int)
    platt = CALIBRATIONS.build("platt").fit(x, None, y)
    assert platt.a == pytest.approx(2.0, abs=0.5) and platt.b == pytest.approx(-1.0, abs=0.4)
    sig = CALIBRATIONS.build("sigmoid")
    p = sig.predict([-1000.0, 0.0, 1000.0])
    assert p.tolist() == [0.0, 0.5, 1.0] and np.isfinite(p).all()
    assert sig.kind == "probability" and CALIBRATIONS.build("km_quantile").kind == "months"


def test_km_quantile_tail_stays_below_the_follow_up_cap_and_strictly_ordered(bladder):
    """Beyond the KM plateau the extrapolation is compressed: the lowest risks get long but plausible times."""
    real = pd.DataFrame({"Time": bladder[0], "Progression": bladder[1]})
    rng = np.random.default_rng(0)
    cal = CALIBRATIONS.build({"name": "km_quantile"}).fit(rng.normal(size=len(real)), real["Time"].to_numpy(),
                                                           real["Progression"].to_numpy())
    risks = np.sort(np.r_[rng.normal(size=500), -50.0, -1e3, -1e6])[::-1]
    months = cal.predict(risks)
    assert np.all(np.isfinite(months)) and np.all(np.diff(months) > 0)
    assert months.max() < 1.25 * real["Time"].max()
    assert months.max() > real["Time"][real["Progression"] == 1].max()  # the tail does extend past the last event
