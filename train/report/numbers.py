"""The report's numbers: CV per architecture (every repeat), cohort-held-out rows with their clinical-only
comparator, the model choice, and the out-of-fold scores the figures group patients by.

Why here and not in the renderer: the figures, the tables and report.json must all show the same numbers, so each
is computed once and stored in report.json; the pages only format them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from chimera_surv.survival.metrics import bootstrap_ci, harrell_c
from train.folds import HOLDOUT_MIN_SIZE
from train.protocol import RunContext


def metric_fn(ctx: RunContext):
    """Harrell's C (survival) or ROC AUC (binary), as f(first, second, risk)."""
    if ctx.survival:
        return lambda event, time, risk: harrell_c(event.astype(bool), time, risk)

    def auc(label, _unused, risk):
        from sklearn.metrics import roc_auc_score

        return float("nan") if label.min() == label.max() else float(roc_auc_score(label, risk))

    return auc


def metric_ci(ctx: RunContext, idx: list[int], risk: np.ndarray, n_boot: int) -> tuple[float, float, float]:
    """(point, low, high) of the task's metric on patients `idx` with a percentile bootstrap."""
    data = ctx.data
    first = data.event[idx] if ctx.survival else data.label[idx]
    second = data.time[idx] if ctx.survival else np.zeros(len(idx))
    return bootstrap_ci(metric_fn(ctx), first, second, np.asarray(risk), n_boot=n_boot, seed=0)


def cv_lines(cv: list[dict[str, Any]], holdout: list[dict[str, Any]], survival: bool,
             holdout_wanted: bool = False) -> list[str]:
    """The CV step's figures for the console and train.log: each architecture's fold mean ± SD, each
    cohort-held-out split (or why there is none, when `holdout_wanted`); the report adds the rest (pooled CIs,
    Uno's C, td-AUC, IBS, D-calibration)."""
    metric = "Harrell C-index" if survival else "ROC AUC"

    def value(x: float) -> str:
        return "undefined" if not np.isfinite(x) else f"{x:.3f}"

    lines = []
    for arch in dict.fromkeys(r["arch"] for r in cv):
        rows = [r for r in cv if r["arch"] == arch]
        folds = np.array([r["metric"] for r in rows], float)
        finite = folds[np.isfinite(folds)]
        summary = (f"{np.mean(finite):.3f} ± {np.std(finite):.3f} (mean ± SD over {len(finite)} test folds"
                   + (f"; {len(folds) - len(finite)} undefined" if len(finite) < len(folds) else "") + ")"
                   if len(finite) else "undefined in every fold")
        chosen = [(r.get("auto") or {}).get("chosen") for r in rows]
        options = {k for r in rows for k in ((r.get("auto") or {}).get("scores") or {})}
        if all(chosen) and len(options) != 1:  # an automatic choice (a fixed family has one option: nothing chosen)
            summary += "; chose " + ", ".join(f"{c} in {chosen.count(c)} of {len(chosen)}"
                                              for c in dict.fromkeys(chosen))
        lines.append(f"cv: {arch}: {metric} {summary}")
    for r in holdout:
        lines.append(f"cohort-held-out: {r['arch']} tested on {r['split']} ({len(r['test'])} patients): {metric} "
                     f"{value(float(r['metric']))}")
    if holdout_wanted and not holdout and cv:
        lines.append("cohort-held-out: none: the data hold fewer than two cohorts of at least "
                     f"{HOLDOUT_MIN_SIZE} patients")
    if lines:
        lines.append("cv: the report step adds the pooled 95% CIs" + (", Uno's C, td-AUC, IBS and D-calibration"
                                                                     if survival else ""))
    return lines


def modality_label(per_fold: list[list[str]]) -> str:
    """What the folds' models used: one combination, or each combination with its fold count when they differ
    (an automatic choice can pick clinical-only in one fold and all modalities in another)."""
    combos = ["+".join(m) for m in per_fold]
    distinct = list(dict.fromkeys(combos))
    if len(distinct) == 1:
        return distinct[0]
    return ", ".join(f"{c} ({combos.count(c)} of {len(combos)} folds)" for c in distinct)


def cv_summary(ctx: RunContext, cv: list[dict[str, Any]], holdout: list[dict[str, Any]]) -> dict[str, Any]:
    """Per architecture: fold metrics, mean ± sd over every fold of every repeat, the pooled out-of-fold metric
    per repeat with a bootstrap CI, and their mean over repeats; the modalities each fold's model used."""
    n_boot = int(ctx.config["protocol"].get("bootstrap", 500))
    out: dict[str, Any] = {"metric": "c_index" if ctx.survival else "auc", "architectures": {}, "holdout": []}
    for arch in dict.fromkeys(r["arch"] for r in cv):
        rows = [r for r in cv if r["arch"] == arch]
        folds = [r["metric"] for r in rows]
        pooled = []
        for repeat in sorted({r["repeat"] for r in rows}):
            idx = [i for r in rows if r["repeat"] == repeat for i in r["test"]]
            risk = np.array([v for r in rows if r["repeat"] == repeat for v in r["risk"]])
            point, low, high = metric_ci(ctx, idx, risk, n_boot)
            pooled.append({"repeat": repeat, "value": point, "ci95": [low, high]})
        values = [p["value"] for p in pooled]
        per_fold = [list(r["modalities"]) for r in rows]
        out["architectures"][arch] = {
            "modalities": list(dict.fromkeys(m for mods in per_fold for m in mods)),
            "fold_modalities": per_fold, "modalities_label": modality_label(per_fold),
            "clinical_only": all(m == ["clinical"] for m in per_fold),
            "folds": [{"split": r["split"], "value": r["metric"], "best_epoch": r["best_epoch"],
                       "inner_val": r["inner_val_metric"], "modalities": r["modalities"]} for r in rows],
            "fold_mean": float(np.nanmean(folds)), "fold_sd": float(np.nanstd(folds)), "n_folds": len(folds),
            "pooled": pooled, "pooled_mean": float(np.mean(values)), "pooled_sd": float(np.std(values)),
            "pooled_ci95_mean": [float(np.mean([p["ci95"][k] for p in pooled])) for k in (0, 1)],
            "n_repeats": len(pooled),
        }
    for r in holdout:
        point, low, high = metric_ci(ctx, r["test"], np.asarray(r["risk"]), n_boot)
        cv_mean = out["architectures"].get(r["arch"], {}).get("fold_mean")
        out["holdout"].append({"arch": r["arch"], "split": r["split"], "n_test": len(r["test"]), "value": point,
                               "ci95": [low, high], "modalities": r["modalities"], "cv_fold_mean": cv_mean,
                               "drop_vs_cv": None if cv_mean is None else point - cv_mean})
    clinical_beside(out["holdout"])
    return out


def clinical_beside(rows: list[dict[str, Any]]) -> None:
    """Each cohort-held-out row gets the clinical-only comparator on the same split: ANOTHER architecture whose
    model used the clinical variables alone (a comparison architecture before the exported `model`), never the
    row itself; None (a dash) when the config ran none on that split."""
    for row in rows:
        others = [r for r in rows if r["split"] == row["split"] and r is not row and r["arch"] != row["arch"]
                  and list(r["modalities"]) == ["clinical"]]
        others.sort(key=lambda r: r["arch"] == "model")  # a named clinical baseline first
        row["clinical_only"] = {"arch": others[0]["arch"], "value": others[0]["value"]} if others else None


def model_choice(ctx: RunContext, summary: dict[str, Any]) -> dict[str, Any]:
    """Which architecture the bundle exports and why. With a fixed `model` the reason is the config; an automatic
    selection (`model: auto`) replaces `why` and `rule` and keeps the candidates' CV scores."""
    candidates = {name: {"fold_mean": row["fold_mean"], "pooled_mean": row["pooled_mean"],
                         "modalities": row["modalities"], "modalities_label": row["modalities_label"]}
                  for name, row in summary["architectures"].items()}
    chosen = ctx.config.get("model") or {}
    auto = (summary.get("auto") or {}).get("exported")
    if auto:  # model: auto: each exported member chose on inner splits of its own training part
        inner = {"loco": "leave-one-cohort-out", "kfold+loco": "stratified k-fold and leave-one-cohort-out"}.get(
            auto["inner"], "stratified k-fold")
        counts = (summary.get("auto") or {}).get("member_choices") or {}
        members = ", ".join(f"{k} ×{v}" for k, v in counts.items()) or auto["chosen"]
        return {"chosen": auto["chosen"], "architecture": chosen,
                "why": (f"`model: auto`: each exported member chose on {auto['n_inner_splits']} inner {inner} splits "
                        f"of its own training part, never on its held-out fold ({members}); the first member's "
                        "inner scores: "
                        + ", ".join(f"{k} {v:.3f}" for k, v in sorted(auto["scores"].items(), key=lambda kv: -kv[1]))),
                "rule": auto.get("rule"),
                "candidates": candidates}
    return {"chosen": "model", "architecture": chosen or "train/networks.py defaults",
            "why": "fixed in the config (`model`); the comparison architectures are reported, not selected",
            "rule": None, "candidates": candidates}


def oof_cv_score(ctx: RunContext, cv: list[dict[str, Any]], arch: str = "model") -> np.ndarray:
    """Each patient's CV out-of-fold score as a within-fold percentile (folds' risk scales differ), averaged
    over repeats: what the KM and calibration figures group patients by (never seen by its model)."""
    total = np.zeros(len(ctx.data))
    count = np.zeros(len(ctx.data))
    for r in (r for r in cv if r["arch"] == arch):
        risk = np.asarray(r["risk"], dtype=float)
        ranks = (np.argsort(np.argsort(risk)) + 0.5) / len(risk)
        total[r["test"]] += ranks
        count[r["test"]] += 1
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def oof_cv_logit(ctx: RunContext, cv: list[dict[str, Any]], arch: str = "model") -> np.ndarray:
    """Binary tasks: each patient's CV out-of-fold logit, averaged over repeats."""
    total, count = np.zeros(len(ctx.data)), np.zeros(len(ctx.data))
    for r in (r for r in cv if r["arch"] == arch):
        total[r["test"]] += np.asarray(r["risk"], dtype=float)
        count[r["test"]] += 1
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def cross_fitted_probability(logit: np.ndarray, label: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Platt scaling of the out-of-fold logit, fitted on the other folds for each patient (not in-sample)."""
    from sklearn.linear_model import LogisticRegression

    n = len(logit)
    order = np.random.default_rng(seed).permutation(n)
    prob = np.zeros(n)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        if len(np.unique(label[train])) < 2:
            prob[test] = float(np.mean(label[train]))
            continue
        model = LogisticRegression().fit(logit[train, None], label[train])
        prob[test] = model.predict_proba(logit[test, None])[:, 1]
    return prob


def exported_family(members: list[dict[str, Any]]) -> str:
    """'network', 'classical' or 'mixed': which statements about training hold for the exported members."""
    kinds = {m.get("kind", "network") for m in members}
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "network")


def distinct_horizons(wanted: list[float] | None, time: np.ndarray, event: np.ndarray) -> list[float]:
    """Calibration horizons in months, each a distinct panel: the configured ones deduplicated, else the 25/50/75%
    quantiles of the EVENT times rounded to months (follow-up quantiles repeat one KM value when follow-up
    plateaus). Where rounded quantiles collide, distinct event months spread over the range stand in."""
    if wanted:
        return sorted({float(h) for h in wanted if float(h) > 0})
    time, event = np.asarray(time, dtype=float), np.asarray(event).astype(bool)
    months = np.unique(np.round(time[event & (time > 0)]))
    months = months[months > 0]
    if len(months) == 0:  # no event: the follow-up itself
        months = np.unique(np.round(time[time > 0]))
        months = months[months > 0] if (months > 0).any() else np.array([1.0])
    picked = sorted({float(np.quantile(months, q, method="nearest")) for q in (0.25, 0.5, 0.75)})
    if len(picked) < min(3, len(months)):
        picked = [float(m) for m in months[np.unique(np.linspace(0, len(months) - 1, 3).round().astype(int))]]
    return picked


def default_horizons(time: np.ndarray, event: np.ndarray | None = None) -> list[float]:
    """The report's default horizons (see `distinct_horizons`); without events, every time counts as one."""
    time = np.asarray(time, dtype=float)
    return distinct_horizons(None, time, np.ones(len(time), bool) if event is None else event)
