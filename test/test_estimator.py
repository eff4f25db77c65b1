"""`ChimeraSurvival` (train/estimator.py) follows the scikit-learn / scikit-survival estimator API."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils import estimator_checks

from train.estimator import ChimeraSurvival

SMALL = {"candidates": {"coxnet": {"family": "coxnet"}}, "ensembles": [], "backbone_residual": False,
         "inner_folds": 3}

# The sklearn checks that apply to a survival estimator without fitting on sklearn's own regression/classification
# targets. Left out, and why: every check that fits (check_fit2d_*, check_estimators_dtypes, check_fit_score_takes_y,
# check_dtype_object, ...) passes a 1-d float or class `y`, which is not a survival target (scikit-survival's own
# estimators fail them the same way); check_estimators_pickle fits the same way (pickling is tested below on a
# survival fit).
API_CHECKS = ("check_parameters_default_constructible", "check_no_attributes_set_in_init", "check_get_params_invariance",
              "check_set_params", "check_estimator_repr", "check_estimator_cloneable", "check_do_not_raise_errors_in_init_or_set_params")


@pytest.fixture(scope="module")
def gbsg2() -> tuple[pd.DataFrame, np.ndarray]:
    from sksurv.datasets import load_gbsg2

    X, y = load_gbsg2()
    return X.iloc[:300].reset_index(drop=True), y[:300]


@pytest.fixture(scope="module")
def fitted(gbsg2: tuple[pd.DataFrame, np.ndarray]) -> ChimeraSurvival:
    X, y = gbsg2
    return ChimeraSurvival(auto=SMALL, members=3).fit(X, y)


@pytest.mark.parametrize("name", API_CHECKS)
def test_sklearn_api_checks(name: str) -> None:
    check = getattr(estimator_checks, name)
    check(type(ChimeraSurvival()).__name__, ChimeraSurvival(auto=SMALL))


def test_cross_val_score_beside_coxnet_on_the_same_folds(gbsg2: tuple[pd.DataFrame, np.ndarray]) -> None:
    from sksurv.linear_model import CoxnetSurvivalAnalysis
    from sksurv.preprocessing import OneHotEncoder

    X, y = gbsg2
    folds = KFold(3, shuffle=True, random_state=0)
    ours = cross_val_score(ChimeraSurvival(auto=SMALL, members=3), X, y, cv=folds)
    coxnet = cross_val_score(make_pipeline(OneHotEncoder(), CoxnetSurvivalAnalysis()), X, y, cv=folds)
    assert ours.shape == (3,) and np.isfinite(ours).all()
    assert ours.mean() > 0.6 and abs(ours.mean() - coxnet.mean()) < 0.05, (ours, coxnet)


def test_pipeline_and_grid_search(gbsg2: tuple[pd.DataFrame, np.ndarray]) -> None:
    from sksurv.preprocessing import OneHotEncoder

    X, y = gbsg2
    pipe = make_pipeline(OneHotEncoder(), ChimeraSurvival(auto=SMALL, members=2)).fit(X, y)
    assert 0.6 < pipe.score(X, y) <= 1
    search = GridSearchCV(ChimeraSurvival(auto=SMALL), {"members": [2, 3]}, cv=KFold(2, shuffle=True, random_state=1))
    search.fit(X, y)
    assert search.best_params_["members"] in (2, 3) and np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_predictions_and_survival_functions(fitted: ChimeraSurvival, gbsg2: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = gbsg2
    risk = fitted.predict(X)
    assert risk.shape == (len(X),) and np.isfinite(risk).all() and risk.std() > 0
    assert fitted.score(X, y) > 0.6
    functions = fitted.predict_survival_function(X.iloc[:4])
    curves = fitted.predict_survival_function(X.iloc[:4], return_array=True)
    assert curves.shape == (4, len(fitted.unique_times_))
    for fn, curve in zip(functions, curves):
        assert np.allclose(fn(fitted.unique_times_), curve)
        assert (np.diff(curve) <= 1e-12).all() and 0 <= curve.min() <= curve.max() <= 1
    order = np.argsort(risk[:4])  # a higher risk never has a higher survival curve
    assert (np.diff(curves[order].mean(axis=1)) <= 1e-12).all()


def test_save_load_gives_the_same_predictions_and_a_container_bundle(
        fitted: ChimeraSurvival, gbsg2: tuple[pd.DataFrame, np.ndarray], tmp_path: Path) -> None:
    from chimera_surv.bundle import load_bundle
    from train.table import predict_table

    X, _ = gbsg2
    folder = fitted.save(tmp_path / "model")
    again = ChimeraSurvival.load(folder)
    assert np.array_equal(again.predict(X), fitted.predict(X))
    assert np.array_equal(again.predict_survival_function(X.iloc[:5], return_array=True),
                          fitted.predict_survival_function(X.iloc[:5], return_array=True))
    assert again.get_params() == fitted.get_params()
    assert load_bundle(folder) is not None  # what inference.py / predict_cohort load
    rows = predict_table(folder, X.iloc[:5])
    assert np.allclose(rows["risk"].astype(float), fitted.predict(X.iloc[:5]), atol=1e-9)
    unpickled = pickle.loads(pickle.dumps(fitted))
    assert np.array_equal(unpickled.predict(X.iloc[:20]), fitted.predict(X.iloc[:20]))


def test_time_and_event_columns_clone_and_errors(gbsg2: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = gbsg2
    frame = X.assign(t=y["time"], e=y["cens"])
    est = ChimeraSurvival(auto=SMALL, members=2)
    with pytest.raises(NotFittedError):
        est.predict(X)
    a = clone(est).fit(frame, time="t", event="e")
    b = clone(est).fit(X, y)
    assert np.allclose(a.predict(X), b.predict(X))  # the same model either way
    with pytest.raises(ValueError, match="structured array"):
        clone(est).fit(X, y["time"])
    with pytest.raises(ValueError, match="lacks the column"):
        b.predict(X.drop(columns=["age"]))
