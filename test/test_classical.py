"""Classical families: exported trees equal the libraries' predictions, parts round-trip through JSON + arrays,
`model: auto` selects on inner folds only (leave-one-cohort-out with two cohorts), and a bundle of every family
loads, predicts, degrades when a modality is missing and is byte-identical across two runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sksurv.util import Surv

from chimera_surv.classical import ClassicalModel, DesignBlock, LinearPredictor, Part, TreeEnsemblePredictor
from train.classical import FAMILIES, Target, _class1_fraction, gb_predictor

RNG = np.random.default_rng(0)
X = RNG.normal(size=(90, 5))
TIME = RNG.exponential(10, size=90) * np.exp(-X[:, 0])
EVENT = RNG.random(90) < 0.7
LABEL = (X[:, 0] + RNG.normal(size=90) > 0).astype(int)
X_NEW = RNG.normal(size=(40, 5)) * 1.5


def test_tree_exports_equal_library_predictions():
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sksurv.ensemble import ExtraSurvivalTrees, GradientBoostingSurvivalAnalysis, RandomSurvivalForest

    y = Surv.from_arrays(EVENT, TIME)
    rsf = RandomSurvivalForest(n_estimators=15, min_samples_leaf=4, low_memory=True, random_state=0).fit(X, y)
    ours = TreeEnsemblePredictor.from_sklearn_trees([e.tree_ for e in rsf.estimators_], 5,
                                                    [e.tree_.value[:, 0, 0] for e in rsf.estimators_], reduce="mean")
    np.testing.assert_allclose(ours.predict(X_NEW), rsf.predict(X_NEW), atol=1e-6, rtol=0)
    # the family's `extra: true` (no time binning here) is ExtraSurvivalTrees, exported the same way
    est = ExtraSurvivalTrees(n_estimators=100, min_samples_leaf=8, low_memory=True, random_state=0).fit(X, y)
    family = FAMILIES.build({"name": "rsf", "extra": True, "time_bins": None})
    exported = family.fit_grid(X, Target(True, TIME, EVENT, LABEL), seed=0)[0]
    np.testing.assert_allclose(exported.predict(X_NEW), est.predict(X_NEW), atol=1e-6, rtol=0)
    assert not np.allclose(exported.predict(X_NEW), rsf.predict(X_NEW))
    gbsa = GradientBoostingSurvivalAnalysis(n_estimators=30, max_depth=2, subsample=0.8, random_state=0).fit(X, y)
    np.testing.assert_allclose(gb_predictor(gbsa, 5).predict(X_NEW), gbsa.predict(X_NEW), atol=1e-6, rtol=0)
    staged = list(gbsa.staged_predict(X_NEW))[9]
    np.testing.assert_allclose(gb_predictor(gbsa, 5, 10).predict(X_NEW), staged, atol=1e-6, rtol=0)
    gbc = GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0).fit(X, LABEL)
    np.testing.assert_allclose(gb_predictor(gbc, 5).predict(X_NEW), gbc.decision_function(X_NEW), atol=1e-6)
    rfc = RandomForestClassifier(n_estimators=10, min_samples_leaf=3, random_state=0).fit(X, LABEL)
    ours = TreeEnsemblePredictor.from_sklearn_trees([e.tree_ for e in rfc.estimators_], 5,
                                                    [_class1_fraction(e.tree_.value) for e in rfc.estimators_],
                                                    reduce="mean")
    np.testing.assert_allclose(ours.predict(X_NEW), rfc.predict_proba(X_NEW)[:, 1], atol=1e-6)


@pytest.mark.parametrize("survival", [True, False])
@pytest.mark.parametrize("spec", [{"name": "ridge"}, {"name": "coxnet"}, {"name": "rsf", "n_estimators": 20},
                                  {"name": "rsf", "n_estimators": 20, "extra": True}, {"name": "gbsa"}])
def test_every_family_fits_a_grid_that_ranks_patients(spec, survival):
    from train.fit import score  # noqa: F401  (the metric the inner CV uses)

    fam = FAMILIES.build(spec)
    predictors = fam.fit_grid(X, Target(survival, TIME, EVENT, LABEL), seed=0)
    assert len(predictors) == len(fam.grid())
    risk = predictors[-1].predict(X_NEW)
    assert risk.shape == (40,) and np.isfinite(risk).all() and np.std(risk) > 0
    truth = X_NEW[:, 0]  # higher x0: earlier event / class 1
    assert np.corrcoef(risk, truth)[0, 1] > 0.3


def test_pooled_bag_block_and_model_round_trip():
    from chimera_surv.classical import pool_bag

    bags = [RNG.normal(size=(int(RNG.integers(3, 9)), 6)) for _ in range(30)]
    pooled = np.stack([pool_bag(b) for b in bags])
    block = DesignBlock.fit("wsi", pooled, ["mean", "max", "std"], n_components=4)
    assert block.width == 4 and pool_bag(None) is None and pool_bag(np.zeros((0, 6))) is None
    clin = DesignBlock.fit("clinical", X[:30])
    model = ClassicalModel("backbone", [
        Part("lin", [clin], LinearPredictor(RNG.normal(size=5)), 1.0, 0.1, 2.0),
        Part("trees", [block], FAMILIES.build({"name": "rsf", "n_estimators": 5}).fit_grid(
            block.transform(pooled), Target(True, TIME[:30], EVENT[:30], LABEL[:30]), 0)[0], 0.5, 0.0, 3.0)])
    rows = {"clinical": X[:30], "wsi": pooled}
    again = ClassicalModel.from_parts(json.loads(json.dumps(model.to_dict())), model.arrays())
    np.testing.assert_array_equal(again.predict(rows), model.predict(rows))
    missing = model.predict({"clinical": X[:30], "wsi": None})  # missing bag → its training mean, finite
    assert np.isfinite(missing).all() and not np.allclose(missing, model.predict(rows))
    broken = model.arrays()
    broken["p0.pred.coef"] = broken["p0.pred.coef"][:3]
    with pytest.raises(ValueError, match="expects"):
        ClassicalModel.from_parts(model.to_dict(), broken)


def test_a_modality_almost_nobody_has_is_left_out_of_the_design():
    from train.classical import fit_blocks

    rows = {"clinical": X[:20], "rna": RNG.normal(size=(20, 4))}
    present = {"clinical": np.ones(20, bool), "rna": np.arange(20) == 3}
    blocks = fit_blocks(rows, present, list(range(20)), ["clinical", "rna"], [], 4)
    assert [b.modality for b in blocks] == ["clinical"]
    with pytest.raises(ValueError, match="fewer than three training patients"):
        fit_blocks(rows, present, list(range(20)), ["rna"], [], 4)


def test_ridge_path_reaches_the_light_coxph_penalty():
    """The ridge family's weakest setting is (close to) the classical CoxPH fit with a small ridge (sksurv alpha
    0.1 on the summed partial likelihood), so the textbook clinical model is inside auto's candidate set."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    Xs = (X - X.mean(0)) / X.std(0)
    y = Target(True, TIME, EVENT, LABEL)
    path = FAMILIES.build({"name": "ridge"}).fit_grid(Xs, y, 0)
    coxph = CoxPHSurvivalAnalysis(alpha=0.1).fit(Xs, y.structured()).coef_
    assert not path[0].coef.any()  # the path starts at the null model (see train/selection/: never chosen)
    assert np.abs(path[-1].coef - coxph).max() < 0.05 * np.abs(coxph).max()


def test_null_settings_are_never_chosen_and_one_se_stays_within_a_family():
    from train.selection import best_setting, is_null

    assert is_null(LinearPredictor(np.zeros(5)), X) and not is_null(LinearPredictor(np.ones(5)), X)
    # a heterogeneous inner split: every real setting ranks below 0.5, the null model scores exactly 0.5
    scored = [(0, 0.5, [0.5, 0.5, 0.5]), (1, 0.46, [0.40, 0.47, 0.51]), (2, 0.44, [0.40, 0.45, 0.47])]
    assert best_setting(scored, {0}, 0.0)[0] == 1
    assert best_setting(scored[:1], {0}, 0.0)[0] == 0  # nothing else: the null model, scored as what it is
    path = [(0, 0.60, [0.6, 0.6]), (1, 0.62, [0.58, 0.66]), (2, 0.63, [0.59, 0.67])]
    assert best_setting(path, set(), 0.0)[0] == 2  # argmax
    assert best_setting(path, set(), 1.0)[0] == 0  # the simplest within one SE (0.04) of 0.63
    assert best_setting([(0, 0.6, [0.6]), (1, 0.6, [0.6])], set(), 0.0)[0] == 0  # ties: the stronger penalty


@pytest.mark.parametrize("survival", [True, False])
@pytest.mark.parametrize("spec", [{"name": "ridge"}, {"name": "coxnet"}, {"name": "rsf", "n_estimators": 5},
                                  {"name": "gbsa"}])
def test_a_part_with_one_class_or_no_event_gives_null_predictors_not_an_error(spec, survival):
    """A small cohort-held-out part (6 patients, all negative) made liblinear raise 'multiclass (n_classes >= 3)';
    every family now returns constant predictors there, which the selection's null check passes over."""
    from train.classical import degenerate, fit_grid, fit_setting
    from train.selection.inner import is_null

    y = Target(survival, TIME, np.zeros_like(EVENT), np.zeros_like(LABEL))
    assert degenerate(y) == ("no event" if survival else "one class")
    fam = FAMILIES.build(spec)
    predictors = fit_grid(fam, X, y, seed=0)
    assert len(predictors) == len(fam.grid()) and all(is_null(p, X) for p in predictors)
    assert is_null(fit_setting(fam, X, y, 0, 0), X)
    assert degenerate(Target(survival, TIME, EVENT, LABEL)) is None
