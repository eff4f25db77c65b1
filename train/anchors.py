"""scikit-survival's classical models on a finished run's own folds: `python -m train anchors CONFIG.yaml`.

Why: a user's question is whether the exported model beats what a statistician would fit first, on the same
patients and the same splits. These anchors are fitted by scikit-survival itself, with their own simple
preprocessing, never through the project's model code: CoxPH (alpha 0.1) on the clinical columns, CoxNet (l1 0.5,
alpha by 3-fold inner CV), a random survival forest (100 trees, leaf 5), gradient-boosted survival (defaults), all
on every tabular column (clinical, RNA, MRI and slide-embedding vectors; patch bags are not tabular and are left
out), and their plain average (risks z-scored on the training part, equal weights, no choice). The same code makes
the anchors of `benchmarks/realdata.py` and `realdata_confirm.py`. Survival tasks only.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ANCHOR_NAMES = ("coxph_clinical", "coxnet", "rsf", "gbsa", "anchor_average")


def anchor_matrix(df: pd.DataFrame, cols: list[str], train: np.ndarray) -> np.ndarray:
    """Numeric columns median-imputed and standardised, factors one-hot, all fitted on `train` rows."""
    parts = []
    for c in cols:
        if c.startswith("num_"):
            x = df[c].astype(float).to_numpy()
            med = np.nanmedian(x[train]) if np.isfinite(x[train]).any() else 0.0
            x = np.where(np.isnan(x), med, x)
            sd = x[train].std() or 1.0
            parts.append(((x - x[train].mean()) / sd)[:, None])
        else:
            values = df[c].astype(str).to_numpy()
            levels = sorted(set(values[train]))[1:]  # drop the first level (reference)
            parts.append(np.stack([(values == lv).astype(float) for lv in levels], 1) if levels
                         else np.zeros((len(df), 0)))
    return np.concatenate(parts, 1) if parts else np.zeros((len(df), 0))


def coxnet_anchor(X: np.ndarray, y: np.ndarray, seed: int) -> Any:
    """CoxNet (l1 0.5) refitted at the alpha of the best mean C over a 3-fold inner CV along one 20-alpha path.

    Each inner fit runs the whole (warm-started) path: one CoxNet fit per single alpha, the GridSearchCV recipe,
    took ~100 s per small alpha with 6,283 genes."""
    from sklearn.model_selection import KFold
    from sksurv.linear_model import CoxnetSurvivalAnalysis
    from sksurv.metrics import concordance_index_censored

    alphas = CoxnetSurvivalAnalysis(l1_ratio=0.5, alpha_min_ratio=0.01, n_alphas=20).fit(X, y).alphas_
    scores, used, n_path = np.zeros(len(alphas)), 0, len(alphas)
    for tr, va in KFold(3, shuffle=True, random_state=seed).split(X):
        if not (y["event"][tr].any() and _has_pair(y["event"][va], y["time"][va])):  # small: nothing to fit or rank
            continue
        model = CoxnetSurvivalAnalysis(l1_ratio=0.5, alphas=alphas).fit(X[tr], y[tr])
        n_path, used = model.coef_.shape[1], used + 1  # the last fold's path length, as before
        for k in range(model.coef_.shape[1]):
            risk = X[va] @ model.coef_[:, k]
            scores[k] += concordance_index_censored(y["event"][va], y["time"][va], risk)[0] / 3
    best = int(np.argmax(scores[:n_path])) if used else 0  # no usable fold: the strongest penalty
    return CoxnetSurvivalAnalysis(l1_ratio=0.5, alphas=alphas[: best + 1]).fit(X, y)


def _coxnet_predict(model: Any, X: np.ndarray) -> np.ndarray:
    return X @ model.coef_[:, -1]


def anchors_on_split(df: pd.DataFrame, clinical: list[str], allcols: list[str], train: np.ndarray,
                     test: np.ndarray, seed: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Each anchor's test C-index and test risk, plus `anchor_average`: the anchors' risks z-scored with their
    mean and SD on the training part, equal weights (no choice)."""
    from sksurv.ensemble import GradientBoostingSurvivalAnalysis, RandomSurvivalForest
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.metrics import concordance_index_censored
    from sksurv.util import Surv

    y = Surv.from_arrays(df["event"].astype(bool).to_numpy(), df["time"].astype(float).to_numpy())

    def c_of(risk: np.ndarray) -> float:
        return float(concordance_index_censored(y["event"][test], y["time"][test], risk)[0])

    predict: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if clinical:
            Xc = anchor_matrix(df, clinical, train)
            predict["coxph_clinical"] = CoxPHSurvivalAnalysis(alpha=0.1).fit(Xc[train], y[train]).predict(Xc)
        X = anchor_matrix(df, allcols, train)
        predict["coxnet"] = _coxnet_predict(coxnet_anchor(X[train], y[train], seed), X)
        rsf = RandomSurvivalForest(n_estimators=100, min_samples_leaf=5, max_features="sqrt", n_jobs=2,
                                   random_state=seed, low_memory=True).fit(X[train], y[train])
        predict["rsf"] = rsf.predict(X)
        predict["gbsa"] = GradientBoostingSurvivalAnalysis(random_state=seed).fit(X[train], y[train]).predict(X)
    z = [(r - r[train].mean()) / (r[train].std() or 1.0) for r in predict.values()]
    predict["anchor_average"] = np.mean(z, axis=0)
    return {k: c_of(r[test]) for k, r in predict.items()}, {k: r[test] for k, r in predict.items()}


def design_frame(data: Any, schema: Any, genes: list[str] | None = None) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(frame, clinical columns, all columns) from a run's `CohortArrays`: `num_<key>` floats (NaN = missing) for
    numeric, ordinal and binary clinical columns, `fac_<key>` strings for categorical ones, then `num_rna_<gene>`,
    `num_mri_<name>` and `num_emb_<name>` columns; `time` and `event` beside them."""
    columns: dict[str, Any] = {}
    clinical: list[str] = []
    if "clinical" in data.modalities:
        for feature in schema.features:
            for key, kind in feature.columns():
                values = [None if r is None else r.values.get(key) for r in data.records]
                if kind == "categorical":
                    name = f"fac_{key}"
                    columns[name] = ["missing" if v is None else str(v) for v in values]
                else:
                    name = f"num_{key}"
                    columns[name] = [np.nan if v is None else float(v) for v in values]
                clinical.append(name)
    blocks = [("rna", data.rna, genes), ("mri", data.mri, data.mri_names),
              ("emb", data.slide_embedding, data.slide_embedding_names)]
    for prefix, matrix, names in blocks:
        if matrix is not None:
            names = names if names and len(names) == matrix.shape[1] else [str(i) for i in range(matrix.shape[1])]
            for j, n in enumerate(names):
                columns[f"num_{prefix}_{n}"] = matrix[:, j].astype(float)
    frame = pd.DataFrame(columns, index=list(data.case_ids))
    frame["time"], frame["event"] = data.time, data.event
    return frame, clinical, [c for c in frame.columns if c not in ("time", "event")]


def run_anchors(data: Any, schema: Any, genes: list[str], records: dict[str, list[dict[str, Any]]],
                out_dir: Path, config_hash: str = "") -> dict[str, Any]:
    """Fit the anchors on every split of the exported model's records (`records`: kind ("cv", "cohort-held-out")
    → the run's records; those of `arch` "model" are used); the training part is every other patient, as in the
    run. Auto's C is recomputed from its stored test risks by the same call. Writes `<out_dir>/anchors.json`."""
    from sksurv.metrics import concordance_index_censored

    frame, clinical, allcols = design_frame(data, schema, genes)
    position = {c: i for i, c in enumerate(frame.index)}
    event, time = frame["event"].astype(bool).to_numpy(), frame["time"].astype(float).to_numpy()
    doc: dict[str, Any] = {"what": __doc__.split("\n\n")[0], "config_hash": config_hash,
                           "columns": {"clinical": len(clinical), "all": len(allcols)}, "splits": {}}
    for kind, kind_records in records.items():
        for r in sorted((r for r in kind_records if r.get("arch") == "model"), key=lambda r: r["split"]):
            test = np.array([position[c] for c in r["case_ids"]])
            train = np.setdiff1d(np.arange(len(frame)), test)
            why = _unusable(event, time, train, test)
            if why:  # a small held-out site: nothing to fit or nothing to rank; said, not fatal
                doc.setdefault("skipped", {})[r["split"]] = why
                continue
            values, _ = anchors_on_split(frame, clinical, allcols, train, test, seed=int(r.get("fold") or 0))
            auto = float(concordance_index_censored(event[test], time[test], np.asarray(r["risk"], float))[0])
            doc["splits"][r["split"]] = {"kind": kind, "n_test": len(test), "auto": round(auto, 4),
                                         **{k: round(v, 4) for k, v in values.items()}}
    doc["summary"] = summarise(doc["splits"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "anchors.json").write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def _unusable(event: np.ndarray, time: np.ndarray, train: np.ndarray, test: np.ndarray) -> str | None:
    """Why the anchors cannot be fitted or scored on a split (scikit-survival raises 'All samples are censored')."""
    if not event[train].any():
        return f"its training part ({len(train)} patients) has no event"
    if not _has_pair(event[test], time[test]):
        return f"its test part ({len(test)} patients) has no comparable pair"
    return None


def _has_pair(event: np.ndarray, time: np.ndarray) -> bool:
    """Whether Harrell's C is defined: some event before some other patient's time."""
    return any(event[i] and (time > time[i]).any() for i in range(len(time)))


def summarise(splits: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per kind (cv, cohort-held-out): each model's mean Harrell C over the splits, the best anchor and auto − it."""
    out: dict[str, Any] = {}
    for kind in ("cv", "cohort-held-out"):
        rows = [s for s in splits.values() if s["kind"] == kind]
        if not rows:
            continue
        names = ["auto"] + [a for a in ANCHOR_NAMES if all(a in s for s in rows)]
        means = {n: round(float(np.mean([s[n] for s in rows])), 4) for n in names}
        best = max((n for n in names if n != "auto"), key=means.get)
        paired = np.array([s["auto"] - s[best] for s in rows])
        out[kind] = {"n_splits": len(rows), "mean": means, "best_anchor": best,
                     "auto_minus_best_anchor": round(means["auto"] - means[best], 4),
                     "auto_ahead_on": int((paired > 0).sum()),
                     "paired_sd": round(float(paired.std(ddof=1)), 4) if len(rows) > 1 else None}
    return out


def lines(doc: dict[str, Any]) -> list[str]:
    """What the console says: one line per kind of split, C-indices with their unit."""
    out = []
    for kind, s in doc["summary"].items():
        cells = ", ".join(f"{n} {v:.3f}" for n, v in s["mean"].items())
        spread = f", paired SD {s['paired_sd']:.3f}" if s.get("paired_sd") is not None else ""
        out.append(f"anchors: {kind} ({s['n_splits']} splits, mean Harrell C-index): {cells}; auto − best anchor "
                   f"({s['best_anchor']}) {s['auto_minus_best_anchor']:+.3f}, auto ahead on {s['auto_ahead_on']} of "
                   f"{s['n_splits']} splits{spread}")
    for split, why in (doc.get("skipped") or {}).items():
        out.append(f"anchors: split {split} left out: {why}")
    return out
