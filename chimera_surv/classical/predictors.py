"""Predictors of the classical families: a linear score and a tree ensemble read from exported arrays.

Each predictor maps a design matrix (n, d) to a score (n,): a Cox log-risk, a cumulative-hazard total, or a logit.
The JSON part says what it is; the arrays go to safetensors. No library object is ever unpickled: the tree
predictor is our own, held equal to scikit-survival's / scikit-learn's predict by a test (1e-6).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from chimera_surv.limits import MAX_TREE_DEPTH, MAX_TREE_NODES
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
        """Refuses (ValueError naming the field) a coefficient vector that is not 1-D, finite and as declared."""
        coef = _array(arrays, "coef", 1, np.floating)
        declared = doc.get("n_features", len(coef))
        if _int(declared, "n_features") != len(coef):
            raise ValueError(f"'coef' has {len(coef)} values, the predictor expects {declared} ('n_features')")
        if not np.isfinite(coef).all():
            raise ValueError("'coef' holds non-finite values")
        return cls(coef, _finite(doc.get("intercept", 0.0), "intercept"))


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
        for _ in range(MAX_TREE_DEPTH + 1):  # a visit bound: validated trees end far sooner; never a hang
            inner = self.left[node] >= 0
            if not inner.any():
                return node
            go_left = X[rows, np.where(inner, self.feature[node], 0)] <= self.threshold[node]
            step = np.where(go_left, self.left[node], self.right[node])
            node = np.where(inner, step, node)
        raise ValueError(f"tree ensemble: a path is longer than {MAX_TREE_DEPTH} nodes (a cycle?)")

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
        """Validated at load: a broken structure is refused here (ValueError naming the field), never at predict."""
        names = ("left", "right", "feature", "threshold", "value", "roots")
        kinds = (np.integer, np.integer, np.integer, np.floating, np.floating, np.integer)
        left, right, feature, threshold, value, roots = (_array(arrays, n, 1, k) for n, k in zip(names, kinds))
        n_features, n_trees = _int(doc.get("n_features"), "n_features"), _int(doc.get("n_trees"), "n_trees")
        reduce = doc.get("reduce", "sum")
        if reduce not in ("sum", "mean"):
            raise ValueError(f"'reduce' must be sum or mean, not {reduce!r}")
        check_tree_structure(left, right, feature, threshold, value, roots, n_features, n_trees)
        return cls(left, right, feature, threshold, value, roots, n_features, _finite(doc.get("init", 0.0), "init"),
                   _finite(doc.get("scale", 1.0), "scale"), reduce)


def check_tree_structure(left: np.ndarray, right: np.ndarray, feature: np.ndarray, threshold: np.ndarray,
                         value: np.ndarray, roots: np.ndarray, n_features: int, n_trees: int) -> None:
    """Raise ValueError unless the flattened trees are well formed: sizes as declared, every child in range (-1
    only as the leaf marker), every node reached at most once from the roots (so no cycle and no shared subtree),
    split features in range, thresholds and values finite. Why: a cycle hangs prediction and a negative index wraps
    around silently; both must be refused when the bundle loads."""
    n_nodes = len(left)
    if not 1 <= n_nodes <= MAX_TREE_NODES:
        raise ValueError(f"'left' has {n_nodes} nodes (allowed 1 to {MAX_TREE_NODES})")
    for name, arr in (("right", right), ("feature", feature), ("threshold", threshold), ("value", value)):
        if len(arr) != n_nodes:
            raise ValueError(f"'{name}' has {len(arr)} entries, 'left' has {n_nodes} nodes")
    if n_trees < 1 or len(roots) != n_trees:
        raise ValueError(f"'roots' has {len(roots)} entries, 'n_trees' declares {n_trees}")
    if n_features < 1:
        raise ValueError(f"'n_features' is {n_features}, at least 1 expected")
    for name, arr in (("left", left), ("right", right)):
        bad = np.flatnonzero((arr < -1) | (arr >= n_nodes))
        if len(bad):
            raise ValueError(f"'{name}'[{bad[0]}] = {arr[bad[0]]} is out of range (-1 = leaf, else 0..{n_nodes - 1})")
    bad = np.flatnonzero((left < 0) != (right < 0))
    if len(bad):
        raise ValueError(f"node {bad[0]} has one child only (left {left[bad[0]]}, right {right[bad[0]]})")
    bad = np.flatnonzero((roots < 0) | (roots >= n_nodes))
    if len(bad):
        raise ValueError(f"'roots'[{bad[0]}] = {roots[bad[0]]} is out of range 0..{n_nodes - 1}")
    inner = left >= 0
    bad = np.flatnonzero(inner & ((feature < 0) | (feature >= n_features)))
    if len(bad):
        raise ValueError(f"'feature'[{bad[0]}] = {feature[bad[0]]} is out of range 0..{n_features - 1}")
    bad = np.flatnonzero(inner & ~np.isfinite(threshold))
    if len(bad):
        raise ValueError(f"'threshold'[{bad[0]}] is not finite")
    if not np.isfinite(value).all():
        raise ValueError(f"'value'[{np.flatnonzero(~np.isfinite(value))[0]}] is not finite")
    seen = np.zeros(n_nodes, dtype=bool)
    frontier, depth = roots, 0
    while len(frontier):  # breadth first; each level marks new nodes or raises, so at most n_nodes levels
        if depth > MAX_TREE_DEPTH:
            raise ValueError(f"a tree is deeper than {MAX_TREE_DEPTH} levels")
        if seen[frontier].any() or len(np.unique(frontier)) != len(frontier):
            again = frontier[seen[frontier]] if seen[frontier].any() else frontier
            raise ValueError(f"node {again[0]} is reached twice from the roots (a cycle or a shared subtree)")
        seen[frontier] = True
        frontier = np.concatenate([left[frontier][inner[frontier]], right[frontier][inner[frontier]]])
        depth += 1


def _array(arrays: dict[str, np.ndarray], name: str, ndim: int, kind: type) -> np.ndarray:
    """arrays[name], which must exist with `ndim` dimensions and a numeric dtype of `kind` (int or float)."""
    if name not in arrays:
        raise ValueError(f"array '{name}' is missing")
    arr = np.asarray(arrays[name])
    if arr.ndim != ndim:
        raise ValueError(f"array '{name}' has shape {arr.shape}, expected {ndim} dimension(s)")
    if not (np.issubdtype(arr.dtype, kind) or (kind is np.floating and np.issubdtype(arr.dtype, np.integer))):
        raise ValueError(f"array '{name}' has dtype {arr.dtype}, expected {kind.__name__}")
    return arr.astype(np.int64 if kind is np.integer else np.float64)


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{name}' is {value!r}, an integer expected")
    return value


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ValueError(f"'{name}' is {value!r}, a finite number expected")
    return float(value)


def predictor_from_parts(doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """Rebuild a predictor from its JSON description and arrays (validated: ValueError naming the field)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise TypeError(f"predictor description {str(doc)[:80]!r} has no 'name'")
    return PREDICTORS.get(doc["name"]).from_parts(doc, arrays)
