"""Predictors of the classical families: a linear score and a tree ensemble read from exported arrays.

Each predictor maps a design matrix (n, d) to a score (n,): a Cox log-risk, a cumulative-hazard total, or a logit.
The JSON part says what it is; the arrays go to safetensors. No library object is ever unpickled: the tree
predictor is our own, held equal to scikit-survival's / scikit-learn's predict by a test (1e-6).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from chimera_surv.registry import Registry

PREDICTORS: Registry[Any] = Registry("classical predictor")


@PREDICTORS.register("linear")
class LinearPredictor:
    """score = X @ coef + intercept (penalised Cox: intercept 0; logistic: the logit)."""

    kind = "linear"

    def __init__(self, coef: np.ndarray, intercept: float = 0.0) -> None:
        self.coef = np.asarray(coef, dtype=np.float64).reshape(-1)
        self.intercept = float(intercept)

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[0])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.coef + self.intercept

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.kind, "intercept": self.intercept, "n_features": self.n_features}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef}

    @classmethod
    def from_parts(cls, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> LinearPredictor:
        return cls(arrays["coef"], doc.get("intercept", 0.0))


@PREDICTORS.register("trees")
class TreeEnsemblePredictor:
    """score = init + scale * reduce_t(leaf value of tree t), reduce = sum or mean, over flattened node arrays.

    `left`/`right` are global node indices (-1 at a leaf), `roots` the first node of each tree. Inputs are cast to
    float32 before the `x <= threshold` test, as scikit-learn's trees do, so the leaves are the library's leaves.
    """

    kind = "trees"

    def __init__(self, left: np.ndarray, right: np.ndarray, feature: np.ndarray, threshold: np.ndarray,
                 value: np.ndarray, roots: np.ndarray, n_features: int, init: float = 0.0, scale: float = 1.0,
                 reduce: str = "sum") -> None:
        self.left = np.asarray(left, dtype=np.int64)
        self.right = np.asarray(right, dtype=np.int64)
        self.feature = np.asarray(feature, dtype=np.int64)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.value = np.asarray(value, dtype=np.float64)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.n_features = int(n_features)
        self.init, self.scale = float(init), float(scale)
        if reduce not in ("sum", "mean"):
            raise ValueError(f"reduce must be sum or mean, not {reduce!r}")
        self.reduce = reduce

    @classmethod
    def from_sklearn_trees(cls, trees: list[Any], n_features: int, values: list[np.ndarray], init: float = 0.0,
                           scale: float = 1.0, reduce: str = "sum") -> TreeEnsemblePredictor:
        """Flatten fitted `tree_` objects; `values[t]` is tree t's per-node scalar (the caller picks it)."""
        left, right, feature, threshold, roots = [], [], [], [], []
        offset = 0
        for tree in trees:
            roots.append(offset)
            lt, rt = tree.children_left.astype(np.int64), tree.children_right.astype(np.int64)
            left.append(np.where(lt >= 0, lt + offset, -1))
            right.append(np.where(rt >= 0, rt + offset, -1))
            feature.append(tree.feature.astype(np.int64))
            threshold.append(tree.threshold.astype(np.float64))
            offset += tree.node_count
        return cls(np.concatenate(left), np.concatenate(right), np.concatenate(feature), np.concatenate(threshold),
                   np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in values]), np.array(roots),
                   n_features, init, scale, reduce)

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """(n, n_trees) leaf node index of each sample in each tree."""
        X = np.asarray(X, dtype=np.float32).astype(np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"tree ensemble expects (n, {self.n_features}) inputs, got {X.shape}")
        node = np.broadcast_to(self.roots, (X.shape[0], len(self.roots))).copy()
        rows = np.arange(X.shape[0])[:, None]
        while True:
            inner = self.left[node] >= 0
            if not inner.any():
                return node
            go_left = X[rows, np.where(inner, self.feature[node], 0)] <= self.threshold[node]
            step = np.where(go_left, self.left[node], self.right[node])
            node = np.where(inner, step, node)

    def predict(self, X: np.ndarray) -> np.ndarray:
        values = self.value[self.leaves(X)]
        total = values.sum(1) if self.reduce == "sum" else values.mean(1)
        return self.init + self.scale * total

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.kind, "n_features": self.n_features, "n_trees": len(self.roots),
                "init": self.init, "scale": self.scale, "reduce": self.reduce}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"left": self.left, "right": self.right, "feature": self.feature, "threshold": self.threshold,
                "value": self.value, "roots": self.roots}

    @classmethod
    def from_parts(cls, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> TreeEnsemblePredictor:
        out = cls(arrays["left"], arrays["right"], arrays["feature"], arrays["threshold"], arrays["value"],
                  arrays["roots"], doc["n_features"], doc.get("init", 0.0), doc.get("scale", 1.0),
                  doc.get("reduce", "sum"))
        n_nodes = len(out.left)
        if not (len(out.right) == len(out.feature) == len(out.threshold) == len(out.value) == n_nodes):
            raise ValueError("tree ensemble arrays have inconsistent lengths")
        if len(out.roots) != int(doc["n_trees"]) or out.left.max(initial=-1) >= n_nodes:
            raise ValueError("tree ensemble structure does not match its description")
        return out


def predictor_from_parts(doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """Rebuild a predictor from its JSON description and arrays."""
    return PREDICTORS.get(doc["name"]).from_parts(doc, arrays)
