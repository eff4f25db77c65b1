"""Fitting the classical families (chimera_surv/classical) on one fold's encoding.

A family is a named grid of settings (FAMILIES registry); `fit_grid` fits every setting of a family on one design
matrix and returns one predictor per setting, so the inner CV of train/selection/ scores a whole penalty path or a
boosting schedule from a single fit. Survival tasks use scikit-survival, the binary task scikit-learn; every
fitted model is exported to arrays (chimera_surv.classical.predictors) and only those arrays predict.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from chimera_surv.classical import DesignBlock, LinearPredictor, Part, TreeEnsemblePredictor, pool_bag
from chimera_surv.registry import Registry
from train.data import CohortArrays, Encoded

FAMILIES: Registry[Any] = Registry("classical family")


# ------------------------------------------------------------------------------------------------ the design
def design_rows(enc: Encoded, data: CohortArrays, modalities: list[str],
                pools: list[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-modality rows for every patient (slides pooled; NaN rows where absent) and presence flags."""
    rows, present = {}, {}
    for m in modalities:
        if m == "wsi":
            pooled = [pool_bag(b, pools) for b in data.bags]
            width = next((len(p) for p in pooled if p is not None), 0)
            rows[m] = np.stack([p if p is not None else np.full(width, np.nan) for p in pooled])
            present[m] = np.array([p is not None for p in pooled])
        else:
            rows[m] = np.asarray(enc.vectors[m], dtype=np.float64)
            present[m] = np.asarray(enc.present[m], dtype=bool)
    return rows, present


class TooFewWithModality(ValueError):
    """No modality of a candidate is present in enough training patients to fit its design block."""


def fit_blocks(rows: dict[str, np.ndarray], present: dict[str, np.ndarray], train: list[int],
               modalities: list[str], pools: list[str], wsi_components: int) -> list[DesignBlock]:
    """One block per modality, fitted on the training patients that have it; a modality that fewer than three
    training patients have is left out of this fit (it could not be centred, let alone weighted)."""
    blocks = []
    for m in modalities:
        fit_idx = [i for i in train if present[m][i]]
        if len(fit_idx) >= 3:
            blocks.append(DesignBlock.fit(m, rows[m][fit_idx], pools if m == "wsi" else None, wsi_components))
    if not blocks:
        raise TooFewWithModality(f"fewer than three training patients have any of {modalities}")
    return blocks


def design(blocks: list[DesignBlock], rows: dict[str, np.ndarray], present: dict[str, np.ndarray],
           n: int) -> np.ndarray:
    return Part("design", blocks, None).design(rows, present, n)


# ------------------------------------------------------------------------------------------------ targets
@dataclass
class Target:
    """What a family is fitted on: survival (time, event) or binary labels."""

    survival: bool
    time: np.ndarray
    event: np.ndarray
    label: np.ndarray

    @classmethod
    def of(cls, data: CohortArrays, idx: list[int], survival: bool) -> Target:
        return cls(survival, data.time[idx], data.event[idx].astype(bool), np.clip(data.label[idx], 0, 1))

    def structured(self) -> np.ndarray:
        from sksurv.util import Surv

        return Surv.from_arrays(self.event, self.time)


# ------------------------------------------------------------------------------------------------ families
@FAMILIES.register("ridge")
class Ridge:
    """Near-ridge Cox (CoxNet, l1_ratio 0.01, one fit of the path) / L2 logistic regression; one setting per
    penalty (alpha = ratio × the fold's alpha_max for Cox; C = 1 / alpha for the logistic model)."""

    def __init__(self, n_alphas: int = 12, alpha_min_ratio: float = 1e-5, l1_ratio: float = 0.01) -> None:
        self.path = Coxnet(l1_ratio, n_alphas, alpha_min_ratio)

    def grid(self) -> list[dict[str, Any]]:
        return self.path.grid()

    def fit_grid(self, X: np.ndarray, y: Target, seed: int) -> list[Any]:
        if y.survival:
            return self.path.fit_grid(X, y, seed)
        from sklearn.linear_model import LogisticRegression

        out = []
        for r in self.grid():  # C on a log scale from 0.01 upwards, one per grid setting
            model = LogisticRegression(C=0.01 / r["alpha_ratio"] ** 0.5, solver="liblinear",
                                       max_iter=2000).fit(X, y.label)
            out.append(LinearPredictor(model.coef_.ravel(), float(model.intercept_[0])))
        return out


@FAMILIES.register("coxnet")
class Coxnet:
    """Elastic-net Cox along a penalty path (alpha = ratio × the fold's alpha_max); L1 logistic for binary."""

    def __init__(self, l1_ratio: float = 0.5, n_alphas: int = 8, alpha_min_ratio: float = 0.02) -> None:
        self.l1_ratio, self.n_alphas, self.alpha_min_ratio = float(l1_ratio), int(n_alphas), float(alpha_min_ratio)

    def grid(self) -> list[dict[str, Any]]:
        ratios = np.geomspace(1.0, self.alpha_min_ratio, self.n_alphas)
        return [{"alpha_ratio": float(r)} for r in ratios]

    def fit_grid(self, X: np.ndarray, y: Target, seed: int) -> list[Any]:
        if not y.survival:
            from sklearn.linear_model import LogisticRegression

            out = []
            for r in self.grid():  # C from 0.01 to 1/alpha_min_ratio on a log scale
                model = LogisticRegression(C=0.02 / r["alpha_ratio"], l1_ratio=1.0, solver="liblinear",
                                           max_iter=2000).fit(X, y.label)
                out.append(LinearPredictor(model.coef_.ravel(), float(model.intercept_[0])))
            return out
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        model = CoxnetSurvivalAnalysis(l1_ratio=self.l1_ratio, n_alphas=self.n_alphas,
                                       alpha_min_ratio=self.alpha_min_ratio, max_iter=100_000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model.fit(X, y.structured())
            except ArithmeticError:  # the path broke down at small penalties: keep the strong-penalty end
                model = CoxnetSurvivalAnalysis(l1_ratio=self.l1_ratio, n_alphas=self.n_alphas,
                                               alpha_min_ratio=0.2, max_iter=100_000).fit(X, y.structured())
        coefs = [model.coef_[:, min(k, model.coef_.shape[1] - 1)] for k in range(self.n_alphas)]
        return [LinearPredictor(c) for c in coefs]


@FAMILIES.register("rsf")
class RSF:
    """Random survival forest / random forest classifier; one setting per minimum leaf size. `extra: true` draws
    each split's threshold at random (extremely randomised trees: scikit-survival's ExtraSurvivalTrees /
    scikit-learn's ExtraTreesClassifier), a lower-variance, more diverse forest on small cohorts.

    Survival times are rounded up to a grid of at most `time_bins` quantiles of the training event times before
    the fit: scikit-survival's log-rank splitter costs O(n x distinct times) per node, which made one forest on 700
    patients take minutes; ranking barely depends on the exact times within a quantile bin."""

    def __init__(self, n_estimators: int = 100, min_samples_leaf: tuple[int, ...] = (8,),
                 max_features: str | float = "sqrt", time_bins: int | None = 64, extra: bool = False) -> None:
        self.n_estimators, self.leaves, self.max_features = int(n_estimators), list(min_samples_leaf), max_features
        self.time_bins, self.extra = time_bins, bool(extra)

    def grid(self) -> list[dict[str, Any]]:
        return [{"min_samples_leaf": int(k)} for k in self.leaves]

    def fit_grid(self, X: np.ndarray, y: Target, seed: int) -> list[Any]:
        return [self._fit(X, y, seed, k) for k in self.leaves]

    def fit_one(self, X: np.ndarray, y: Target, seed: int, index: int) -> Any:
        return self._fit(X, y, seed, self.leaves[index])

    def _fit(self, X: np.ndarray, y: Target, seed: int, leaf: int) -> TreeEnsemblePredictor:
        if y.survival:
            from sksurv.ensemble import ExtraSurvivalTrees, RandomSurvivalForest
            from sksurv.util import Surv

            forest = ExtraSurvivalTrees if self.extra else RandomSurvivalForest
            model = forest(n_estimators=self.n_estimators, min_samples_leaf=leaf, max_features=self.max_features,
                           low_memory=True, n_jobs=1, random_state=seed).fit(X, Surv.from_arrays(y.event, self._binned(y)))
            values = [e.tree_.value[:, 0, 0] for e in model.estimators_]
        else:
            from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

            classifier = ExtraTreesClassifier if self.extra else RandomForestClassifier
            model = classifier(n_estimators=self.n_estimators, min_samples_leaf=leaf,
                               max_features=self.max_features, n_jobs=1, random_state=seed).fit(X, y.label)
            values = [_class1_fraction(e.tree_.value) for e in model.estimators_]
        return TreeEnsemblePredictor.from_sklearn_trees([e.tree_ for e in model.estimators_], X.shape[1], values,
                                                        reduce="mean")

    def _binned(self, y: Target) -> np.ndarray:
        """Times rounded up to the grid (order kept; ties only within a bin)."""
        events = np.unique(y.time[y.event])
        if not self.time_bins or len(events) <= self.time_bins:
            return y.time
        grid = np.unique(np.quantile(events, np.linspace(0, 1, int(self.time_bins))))
        grid = np.append(grid, max(float(y.time.max()), grid[-1]))
        return grid[np.minimum(np.searchsorted(grid, y.time, side="left"), len(grid) - 1)]


def _class1_fraction(value: np.ndarray) -> np.ndarray:
    counts = value[:, 0, :]
    return counts[:, 1] / np.maximum(counts.sum(1), 1e-300)


@FAMILIES.register("gbsa")
class GradientBoosting:
    """Gradient-boosted Cox trees / gradient-boosted classifier; one setting per number of stages (one fit)."""

    def __init__(self, stages: tuple[int, ...] = (25, 50, 100), learning_rate: float = 0.1, max_depth: int = 2,
                 subsample: float = 0.8, min_samples_leaf: int = 5, max_features: str | float | None = "sqrt") -> None:
        self.stages = sorted(int(s) for s in stages)
        self.lr, self.depth, self.subsample = float(learning_rate), int(max_depth), float(subsample)
        self.min_leaf, self.max_features = int(min_samples_leaf), max_features

    def grid(self) -> list[dict[str, Any]]:
        return [{"n_estimators": s} for s in self.stages]

    def fit_grid(self, X: np.ndarray, y: Target, seed: int) -> list[Any]:
        kwargs = {"n_estimators": self.stages[-1], "learning_rate": self.lr, "max_depth": self.depth,
                  "subsample": self.subsample, "min_samples_leaf": self.min_leaf,
                  "max_features": self.max_features, "random_state": seed}
        if y.survival:
            from sksurv.ensemble import GradientBoostingSurvivalAnalysis

            model = GradientBoostingSurvivalAnalysis(loss="coxph", **kwargs).fit(X, y.structured())
        else:
            from sklearn.ensemble import GradientBoostingClassifier

            model = GradientBoostingClassifier(**kwargs).fit(X, y.label)
        return [gb_predictor(model, X.shape[1], s) for s in self.stages]


def gb_predictor(model: Any, n_features: int, stages: int | None = None) -> TreeEnsemblePredictor:
    """Export the first `stages` trees of a fitted (survival or binary) gradient-boosting model."""
    trees = [row[0].tree_ for row in model.estimators_[:stages]]
    init = float(np.asarray(model._raw_predict_init(np.zeros((1, n_features), dtype=np.float32))).ravel()[0])
    return TreeEnsemblePredictor.from_sklearn_trees(trees, n_features, [t.value[:, 0, 0] for t in trees],
                                                    init=init, scale=model.learning_rate, reduce="sum")


def degenerate(y: Target) -> str | None:
    """Why a training part can teach no model (a binary part with one class, a survival part without an event), or
    None. Small cohort-held-out or inner training parts can be like that; sklearn's error then names the wrong cause."""
    if y.survival:
        return None if np.any(y.event) else "no event"
    return None if len(np.unique(y.label)) > 1 else "one class"


def _constant(X: np.ndarray) -> LinearPredictor:
    return LinearPredictor(np.zeros(X.shape[1]), 0.0)


def fit_grid(family: Any, X: np.ndarray, y: Target, seed: int) -> list[Any]:
    """Every setting's predictor; a constant one per setting on a degenerate training part, which the selection's
    null check passes over (inner.is_null) instead of the run stopping."""
    if degenerate(y):
        return [_constant(X) for _ in family.grid()]
    return family.fit_grid(X, y, seed)


def fit_setting(family: Any, X: np.ndarray, y: Target, seed: int, index: int) -> Any:
    """The predictor of one grid setting (a single fit where the family allows it); constant on a degenerate part."""
    if degenerate(y):
        return _constant(X)
    if hasattr(family, "fit_one"):
        return family.fit_one(X, y, seed, index)
    return family.fit_grid(X, y, seed)[index]
