"""The training report's figures, each a pure function of arrays → a 300 dpi PNG (paper resolution).

Why these: a C-index says nothing about whether the risk groups separate (KM with numbers at risk, censor marks and
a log-rank p), whether the predicted event-free probabilities are right (calibration at fixed horizons, by risk
group, with CIs), or, for Task 2, where the evaluator's fixed 0.5 threshold sits (ROC, reliability, F1 against
threshold). Lifelines draws the KM curves, the at-risk table and the log-rank test; scikit-learn the ROC and the
reliability bins. Matplotlib's Agg backend (no display).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

DPI = 300
GROUPS = ("low", "intermediate", "high")
COLOURS = ("#1b9e77", "#7570b3", "#d95f02")
MODALITY_LABELS = {"wsi": "Whole-slide image", "clinical": "Clinical variables", "rna": "RNA expression",
                   "mri": "MRI", "interaction": "Interaction between data types"}


def _save(fig: Any, path: Path) -> str:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path.name


def risk_groups(risk: np.ndarray) -> np.ndarray:
    """Tertiles of the predicted risk by rank (0 low, 1 intermediate, 2 high): equal-sized groups even when
    scores tie (ties broken by patient order, deterministically)."""
    risk = np.asarray(risk, dtype=float)
    groups = np.empty(len(risk), dtype=int)
    groups[np.argsort(risk, kind="stable")] = np.arange(len(risk)) * 3 // max(len(risk), 1)
    return groups


def km_by_risk_group(time: np.ndarray, event: np.ndarray, risk: np.ndarray, path: Path, subtitle: str) -> float:
    """KM per risk tertile with censor marks, 95% CIs, numbers at risk; returns the log-rank p (3 groups)."""
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts
    from lifelines.statistics import multivariate_logrank_test

    groups = risk_groups(risk)
    fig, ax = plt.subplots(figsize=(6.5, 5.2))
    fitters = []
    for g, (name, colour) in enumerate(zip(GROUPS, COLOURS, strict=True)):
        sel = groups == g
        if not sel.any():
            continue
        kmf = KaplanMeierFitter(label=f"{name} risk (n={int(sel.sum())})")
        kmf.fit(time[sel], event[sel].astype(bool))
        kmf.plot_survival_function(ax=ax, show_censors=True, ci_show=True, ci_alpha=0.12, color=colour,
                                   censor_styles={"marker": "|", "ms": 7, "mew": 1.2})
        fitters.append(kmf)
    p = float(multivariate_logrank_test(time, groups, event.astype(bool)).p_value)
    ax.set(xlabel="months since baseline", ylabel="event-free probability", ylim=(0, 1.02), xlim=(0, None),
           title=f"Kaplan–Meier by predicted risk tertile ({subtitle})")
    ax.text(0.98, 0.97, f"log-rank p = {p:.2g}", transform=ax.transAxes, ha="right", va="top", fontsize=9)
    ax.legend(loc="lower left", fontsize=8, title="| = censored", title_fontsize=8, frameon=False)
    add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk"], fig=fig)
    _save(fig, path)
    return p


def cross_fitted_survival(time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizons: list[float],
                          folds: int = 5, seed: int = 0, clip_mad: float | None = None) -> np.ndarray:
    """(n, H) predicted event-free probabilities at `horizons`: the bundle's kind of survival curve
    (train/survival_curve.py: one-covariate Cox, Breslow baseline, risk winsorised by `clip_mad`), fitted on the
    other folds for each patient (never on the patient itself), so the calibration is not in-sample."""
    from train.survival_curve import fit_survival_curve

    n = len(time)
    order = np.random.default_rng(seed).permutation(n)
    out = np.full((n, len(horizons)), np.nan)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        curve = fit_survival_curve(risk[train], time[train], event[train], clip_mad)
        out[test] = [curve.survival(float(r), list(horizons)) for r in risk[test]]
    return out


def calibration_at_horizons(time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizons: list[float],
                            path: Path, clip_mad: float | None = None) -> list[dict[str, Any]]:
    """Predicted (mean, cross-fitted) against observed (KM, 95% CI) event-free probability per risk tertile,
    one panel per horizon; returns the numbers drawn (the report's calibration table)."""
    from lifelines import KaplanMeierFitter

    predicted = cross_fitted_survival(time, event, risk, horizons, clip_mad=clip_mad)
    groups = risk_groups(risk)
    rows = []
    fig, axes = plt.subplots(1, len(horizons), figsize=(3.6 * len(horizons), 3.8), squeeze=False)
    for h, (ax, horizon) in enumerate(zip(axes[0], horizons, strict=True)):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfect calibration")
        for g, (name, colour) in enumerate(zip(GROUPS, COLOURS, strict=True)):
            sel = groups == g
            if sel.sum() < 2:
                continue
            kmf = KaplanMeierFitter().fit(time[sel], event[sel].astype(bool))
            observed = float(kmf.predict(horizon))
            ci = kmf.confidence_interval_survival_function_
            idx = ci.index.searchsorted(horizon, side="right") - 1
            low, high = (float(v) for v in ci.iloc[max(idx, 0)])
            pred = float(np.nanmean(predicted[sel, h]))
            ax.errorbar(pred, observed, yerr=[[max(observed - low, 0)], [max(high - observed, 0)]], fmt="o",
                        color=colour, capsize=3, label=f"{name} risk")
            rows.append({"horizon": horizon, "group": name, "n": int(sel.sum()), "predicted": pred,
                         "observed": observed, "ci95": [low, high]})
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted event-free probability",
               title=f"at {horizon:g} months")
        if h == 0:
            ax.set_ylabel("observed (Kaplan–Meier, 95% CI)")
            ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Calibration by risk tertile (out-of-fold risk, cross-fitted Cox–Breslow baseline)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return rows


def training_curves(histories: list[dict[str, Any]], metric: str, path: Path) -> str:
    """Loss and inner-validation metric per epoch, one thin line per CV fold, the median bold, the chosen
    (early-stopping) epoch of each fold marked."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for panel, key, label in ((0, "train_loss", "training loss"), (1, "val_metric", f"inner-validation {metric}")):
        ax = axes[panel]
        curves = []
        for k, record in enumerate(histories):
            epochs = [h["epoch"] for h in record["history"]]
            values = [h[key] for h in record["history"]]
            curves.append(dict(zip(epochs, values, strict=True)))
            ax.plot(epochs, values, color="#999999", lw=0.7, alpha=0.7, label="one CV fold" if k == 0 else None)
            best = record.get("best_epoch")
            if panel == 1 and best in curves[-1]:
                ax.plot([best], [curves[-1][best]], "v", color="#d95f02", ms=5,
                        label="chosen epoch (early stopping)" if k == 0 else None)
        all_epochs = sorted({e for c in curves for e in c})
        median = [float(np.nanmedian([c[e] for c in curves if e in c])) for e in all_epochs]
        ax.plot(all_epochs, median, color="black", lw=1.8,
                label=f"median over the folds still training (of {len(curves)})")
        ax.set(xlabel="epoch", ylabel=label, title=label)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def roc_figure(label: np.ndarray, prob: np.ndarray, auc_ci: tuple[float, float, float], path: Path) -> str:
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(label, prob)
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.plot(fpr, tpr, color=COLOURS[2], lw=1.8,
            label=f"AUC {auc_ci[0]:.3f} (95% CI {auc_ci[1]:.3f}–{auc_ci[2]:.3f})")
    at = int(np.argmin(np.abs(thresholds - 0.5)))
    ax.plot(fpr[at], tpr[at], "o", color="black", label="threshold 0.5 (the evaluator's)")
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="chance")
    ax.set(xlabel="false positive rate (1 − specificity)", ylabel="true positive rate (sensitivity)",
           title="ROC, out-of-fold P(BRS3)", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def reliability(label: np.ndarray, prob: np.ndarray, path: Path, bins: int = 5) -> str:
    """Observed BRS3 fraction (Wilson 95% CI) against mean predicted probability in quantile bins."""
    edges = np.unique(np.quantile(prob, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.digitize(prob, edges[1:-1]), 0, len(edges) - 2)
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.8, 5.4), height_ratios=(3, 1), sharex=True)
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="perfect calibration")
    for b in range(len(edges) - 1):
        sel = which == b
        if not sel.any():
            continue
        k, n = int(label[sel].sum()), int(sel.sum())
        low, high = _wilson(k, n)
        mean_p, obs = float(prob[sel].mean()), k / n
        ax.errorbar(mean_p, obs, yerr=[[obs - low], [high - obs]], fmt="o", color=COLOURS[1], capsize=3,
                    label="quantile bin (Wilson 95% CI)" if b == 0 else None)
    ax.set(ylabel="observed fraction BRS3", ylim=(0, 1), title="Reliability, out-of-fold P(BRS3)")
    ax.legend(fontsize=8, loc="upper left")
    hist.hist(prob, bins=20, range=(0, 1), color="#999999")
    hist.axvline(0.5, color="black", lw=0.8)
    hist.set(xlabel="predicted P(BRS3)", ylabel="patients", xlim=(0, 1))
    fig.tight_layout()
    return _save(fig, path)


def f1_vs_threshold(label: np.ndarray, prob: np.ndarray, path: Path) -> str:
    from sklearn.metrics import f1_score

    thresholds = np.linspace(0.02, 0.98, 49)
    f1 = [f1_score(label, prob >= t, zero_division=0) for t in thresholds]
    at_half = f1_score(label, prob >= 0.5, zero_division=0)
    fig, ax = plt.subplots(figsize=(4.8, 3.8))
    ax.plot(thresholds, f1, color=COLOURS[0], lw=1.8, label="F1 of BRS3 at threshold")
    ax.axvline(0.5, color="black", lw=0.8, ls="--", label=f"evaluator threshold 0.5 (F1 {at_half:.3f})")
    ax.set(xlabel="threshold on predicted P(BRS3)", ylabel="F1", xlim=(0, 1), ylim=(0, 1),
           title="F1 against threshold (out-of-fold)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _reference(masker: str) -> str:
    """What an absent data type is replaced by, in words (the audit's masker names)."""
    if masker.startswith("mean"):
        return "missing data = cohort average"
    if masker.startswith("shuffle"):
        return "missing data = other patients' values"
    return f"missing data: {masker}"


def intershap_figure(summary: dict[str, Any], path: Path) -> str:
    """How much of the prediction each data type carries alone and how much only their combination carries,
    mean ± SD over the ensemble members, one bar group per masker (the reference the absent data type gets)."""
    mods = list(summary["modalities"])
    maskers = list(summary["maskers"])
    labels, means, sds, colours = [], [], [], []
    for m_i, masker in enumerate(maskers):
        est = summary["maskers"][masker].get("orig_mean_abs") or next(iter(summary["maskers"][masker].values()))
        keys = mods + [k for k in est["shares_pct"] if k not in mods]
        extra = {k: v for k, v in est.items() if k.endswith("_pct") and k not in ("interaction_pct", "shares_pct")}
        for key in keys:
            labels.append(f"{MODALITY_LABELS.get(key, key)}\n({_reference(masker)})")
            means.append(est["shares_pct"][key]["mean"])
            sds.append(est["shares_pct"][key]["sd"])
            colours.append(COLOURS[2] if key == "interaction" else COLOURS[m_i % 2])
        for key, value in extra.items():  # e.g. a three-way interaction term, once the audit computes it
            labels.append(f"{key.removesuffix('_pct').replace('_', ' ')}\n({_reference(masker)})")
            means.append(value["mean"])
            sds.append(value["sd"])
            colours.append(COLOURS[2])
    for masker, h in (summary.get("harsanyi") or {}).items():  # pairwise and all-M terms beside the shares
        for order, value in h["by_order_pct"].items():
            if int(order) < 2:
                continue
            name = "all three data types together" if int(order) == 3 == h["order"] else f"{order} data types together"
            labels.append(f"{'pairs of data types' if int(order) == 2 else name}\n(Harsanyi share, {_reference(masker)})")
            means.append(value["mean"])
            sds.append(value["sd"])
            colours.append("#e7298a")
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.7 * max(len(labels), 1)))
    y = np.arange(len(labels))[::-1]
    ax.barh(y, means, xerr=sds, color=colours, capsize=3)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set(xlabel="share of the prediction's attribution (%)\nInterSHAP, mean ± SD over ensemble members",
           xlim=(0, 100),
           title="What the prediction rests on:\neach data type alone vs their interaction")
    fig.tight_layout()
    return _save(fig, path)
