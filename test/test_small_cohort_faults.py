"""Faults a sweep of 36 small or odd synthetic cohorts found (10-45 patients, few events, one class, a 5-patient
site): each used to stop the run with a library's message; each now has a defined result."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from chimera_surv.predict import task_bundle_dir
from train.export import undefined_as_null
from train.folds import repeated_kfold
from train.survival_curve import constant_risk, fit_survival_curve


def test_a_constant_out_of_fold_risk_gets_the_cohorts_own_curve():
    """lifelines divided by the risk's SD (0) and stopped the export; the curve is now the Nelson-Aalen one."""
    from lifelines import NelsonAalenFitter

    rng = np.random.default_rng(0)
    time, event = rng.uniform(1, 50, 30), rng.random(30) < 0.4
    curve = fit_survival_curve(np.full(30, 1.7e-18), time, event, clip_mad=None)
    oracle = NelsonAalenFitter().fit(time, event).cumulative_hazard_
    oracle = oracle[oracle.index > 0]
    assert curve.beta == 0.0
    np.testing.assert_allclose(curve.knot_h, oracle.iloc[:, 0].to_numpy())
    np.testing.assert_allclose(curve.knot_t, oracle.index.to_numpy())
    assert constant_risk(np.full(5, 3.0)) and not constant_risk(np.arange(5.0))


def test_undefined_report_numbers_become_null_in_the_bundle_metadata():
    doc = {"folds": [{"value": math.nan, "inner_val": -math.inf}], "gains": {"x": (0.1, math.inf)}, "ok": 0.7,
           "n": 3, "name": "model", "np": np.float64("nan")}
    clean = undefined_as_null(doc)
    assert clean == {"folds": [{"value": None, "inner_val": None}], "gains": {"x": [0.1, None]}, "ok": 0.7, "n": 3,
                     "name": "model", "np": None}
    json.dumps(clean, allow_nan=False)  # what the bundle writer demands


def test_folds_of_a_five_patient_site_split_five_ways():
    """A held-out site of 5 patients (4 events) split into 5 inner folds: no event class has 5 members."""
    folds = repeated_kfold([1, 1, 1, 1, 0], ["3B"] * 5, 5, 1, seed=0)
    assert sorted(i for f in folds for i in f.test) == [0, 1, 2, 3, 4]
    # unchanged where the event alone suffices
    outcome = [1] * 8 + [0] * 2
    assert [f.test for f in repeated_kfold(outcome, ["a"] * 10, 2, 1, 0)] == \
        [f.test for f in repeated_kfold(outcome, ["b"] * 10, 2, 1, 0)]


def _bundle(folder: Path, task_id: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "bundle.json").write_text(json.dumps({"task_id": task_id}))
    return folder


def test_the_model_folder_may_be_the_layout_the_bundle_itself_or_hold_one_bundle_of_the_task(tmp_path):
    task = SimpleNamespace(id=3, name="nmibc-recurrence")
    layout = _bundle(tmp_path / "layout" / "nmibc-recurrence", 3)
    assert task_bundle_dir(tmp_path / "layout", task) == layout
    itself = _bundle(tmp_path / "itself", 3)
    assert task_bundle_dir(itself, task) == itself
    _bundle(tmp_path / "holder" / "b", 3)
    _bundle(tmp_path / "holder" / "other", 1)
    assert task_bundle_dir(tmp_path / "holder", task) == tmp_path / "holder" / "b"
    _bundle(tmp_path / "two" / "b1", 3)
    _bundle(tmp_path / "two" / "b2", 3)  # ambiguous: the layout's name, which then has no bundle
    assert task_bundle_dir(tmp_path / "two", task) == tmp_path / "two" / "nmibc-recurrence"


@pytest.mark.parametrize("survival", [True, False])
def test_the_cv_lines_promise_survival_metrics_only_for_survival(survival):
    from train.report.numbers import cv_lines

    record = {"arch": "model", "split": "r0f0", "metric": 0.6, "test": [0, 1]}
    last = cv_lines([record], [], survival)[-1]
    assert ("IBS" in last) == survival and "pooled 95% CIs" in last
