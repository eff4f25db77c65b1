"""The clinical variables' association with the outcome, per SD, with 95% CIs: the report's coefficient table.

Why a refit and not the exported members' weights: the members' weights sit on a design that also carries slide
PCA components, RNA and missing-indicator columns, fitted per fold with a penalty, and give no CI. This table
refits ONE transparent model on the whole cohort's standardised clinical design: a Cox model (lifelines, small
ridge penalty; hazard ratio per SD, Wald 95% CI) for survival, a logistic regression (scikit-learn; odds ratio per
SD, ridge-shrunk, percentile bootstrap 95% CI) for binary tasks. It says how each variable relates to the outcome in this cohort;
it is not the exported model's own weights, and the report says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from train.protocol import RunContext

PENALIZER = 0.01  # Cox ridge penalty (lifelines)
LOGISTIC_C = 1.0  # logistic L2 strength: small binary cohorts separate, and an unpenalised fit runs off to infinity
N_BOOT = 200


def _design(ctx: RunContext) -> tuple[np.ndarray, list[str]]:
    """The whole cohort's clinical design (numeric columns standardised, categorical one-hot), constant and
    missing-indicator columns without variation dropped."""
    from chimera_surv.preprocess import ClinicalEncoder
    from train.data import _empty_record

    data = ctx.data
    records = [r if r is not None else _empty_record(ctx.schema) for r in data.records]
    encoder = ClinicalEncoder().fit([r for r in data.records if r is not None], ctx.schema)
    X = np.asarray(encoder.transform(records), dtype=float)
    names = encoder.feature_names()
    reference: dict[str, str] = {}  # categorical: the first category seen is the reference, its column dropped
    drop = set()
    for j, name in enumerate(names):
        variable, _, level = name.partition("=")
        if level and np.std(X[:, j]) > 1e-9 and variable not in reference:
            reference[variable] = level
            drop.add(j)
    names = [f"{n} (vs {reference[n.partition('=')[0]]})" if "=" in n and n.partition("=")[0] in reference else n
             for n in names]
    keep = [j for j in range(X.shape[1]) if np.std(X[:, j]) > 1e-9 and j not in drop]
    X = X[:, keep]
    X = (X - X.mean(axis=0)) / X.std(axis=0)  # per SD, also for 0/1 and one-hot columns
    return X, [names[j] for j in keep]


def model_terms(ctx: RunContext, members: list[dict[str, Any]]) -> dict[str, Any] | None:
    """{method, effect, rows: [{term, effect, ci95, p}]} for a model that uses the clinical variables; None
    when no exported member uses them."""
    if not any("clinical" in m.get("modalities", []) for m in members) or "clinical" not in ctx.data.modalities:
        return None
    X, names = _design(ctx)
    if X.shape[1] == 0:
        return None
    if ctx.survival:
        import pandas as pd
        from lifelines import CoxPHFitter

        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
        frame["time"], frame["event"] = ctx.data.time, ctx.data.event.astype(int)
        cph = CoxPHFitter(penalizer=PENALIZER).fit(frame, "time", "event")
        s = cph.summary
        rows = [{"term": name, "effect": float(s.loc[f"x{j}", "exp(coef)"]),
                 "ci95": [float(s.loc[f"x{j}", "exp(coef) lower 95%"]), float(s.loc[f"x{j}", "exp(coef) upper 95%"])],
                 "p": float(s.loc[f"x{j}", "p"])} for j, name in enumerate(names)]
        return {"effect": "hazard ratio per SD", "rows": _ordered(rows),
                "method": (f"Cox model refitted on the whole cohort's standardised clinical variables (lifelines, "
                           f"ridge penalty {PENALIZER}); Wald 95% CI")}
    from sklearn.linear_model import LogisticRegression

    label = ctx.data.label.astype(int)
    fit = LogisticRegression(C=LOGISTIC_C, max_iter=2000).fit(X, label)
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(N_BOOT):
        idx = rng.integers(0, len(label), len(label))
        if label[idx].min() != label[idx].max():
            boots.append(LogisticRegression(C=LOGISTIC_C, max_iter=2000).fit(X[idx], label[idx]).coef_[0])
    low, high = np.percentile(np.exp(boots), [2.5, 97.5], axis=0)
    rows = [{"term": name, "effect": float(np.exp(fit.coef_[0][j])), "ci95": [float(low[j]), float(high[j])],
             "p": None} for j, name in enumerate(names)]
    return {"effect": "odds ratio per SD", "rows": _ordered(rows),
            "method": (f"logistic regression refitted on the whole cohort's standardised clinical variables "
                       f"(scikit-learn, L2 C={LOGISTIC_C:g}, which shrinks the ratios towards 1); percentile bootstrap 95% CI "
                       f"({N_BOOT} resamples)")}


def _ordered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Strongest association first (|log effect|)."""
    return sorted(rows, key=lambda r: -abs(np.log(max(r["effect"], 1e-300))))
