"""Held-out permutation importance of the clinical variables, for a model built on trees (no coefficients to show).

Why refit and held out: a tree ensemble has no per-variable weight, and importance measured on the patients a forest
was grown on mostly rewards what it memorised. So, like the coefficient table (train/report/coefficients.py), this
refits ONE model of the exported tree family (the project's own `rsf` or `gbsa`, first setting of its grid) on the
whole cohort's clinical design, but in stratified folds: each variable (all one-hot columns of a categorical
together) is shuffled in the held-out part, and its importance is the drop of the held-out Harrell's C (AUC for
binary tasks). Mean and SD over folds x shuffles. About 0 = the forest does not use it; below 0 = noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from train.protocol import RunContext

TREE_FAMILIES = ("rsf", "gbsa")
FOLDS, SHUFFLES = 3, 5


def tree_family(members: list[dict[str, Any]]) -> str | None:
    """The tree family carrying the most weight in the exported members' classical models (None: no trees)."""
    weight = {f: 0.0 for f in TREE_FAMILIES}
    for record in members:
        for part in (record.get("network") or {}).get("parts", []) if record.get("kind") == "classical" else []:
            if part.get("family") in weight:
                weight[part["family"]] += abs(float(part.get("weight", 1.0)))
    best = max(weight, key=lambda f: weight[f])
    return best if weight[best] > 0 else None


def _groups(names: list[str]) -> dict[str, list[int]]:
    """Variable → its design columns (`stage=T1 (vs Ta)` and `stage=T2 (vs Ta)` are one variable)."""
    out: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        out.setdefault(name.partition("=")[0], []).append(j)
    return out


def permutation_importance(ctx: RunContext, members: list[dict[str, Any]], seed: int = 0) -> dict[str, Any] | None:
    """{family, metric, method, rows: [{term, drop, sd}]} strongest first; None when no exported member is a tree
    model that uses the clinical variables."""
    from train.classical import FAMILIES, Target, fit_setting
    from train.fit import score
    from train.folds import repeated_kfold
    from train.report.coefficients import _design

    family = tree_family([m for m in members if "clinical" in m.get("modalities", [])])
    if family is None or "clinical" not in ctx.data.modalities:
        return None
    X, names = _design(ctx)
    if X.shape[1] == 0:
        return None
    data, rng = ctx.data, np.random.default_rng(seed)
    groups = _groups(names)
    drops: dict[str, list[float]] = {v: [] for v in groups}
    for split in repeated_kfold(data.outcome, data.cohorts, FOLDS, 1, seed):
        train, test = list(split.train), list(split.test)
        model = fit_setting(FAMILIES.build({"name": family}), X[train], Target.of(data, train, ctx.survival), seed, 0)
        base = score(ctx.survival, data, test, model.predict(X[test]))
        if not np.isfinite(base):
            continue
        for variable, columns in groups.items():
            for _ in range(SHUFFLES):
                shuffled = X[test].copy()
                shuffled[:, columns] = shuffled[rng.permutation(len(test))][:, columns]
                drops[variable].append(base - score(ctx.survival, data, test, model.predict(shuffled)))
    rows = [{"term": v, "drop": float(np.mean(d)), "sd": float(np.std(d))} for v, d in drops.items() if d]
    if not rows:
        return None
    metric = "Harrell's C" if ctx.survival else "AUC"
    return {"family": family, "metric": metric, "rows": sorted(rows, key=lambda r: -r["drop"]),
            "method": (f"{family} refitted on the whole cohort's clinical variables in {FOLDS} stratified folds; each "
                       f"variable shuffled {SHUFFLES} times in the held-out part; drop of the held-out {metric}, "
                       f"mean and SD over folds and shuffles")}
