"""Step `report`: the numbers (report.json), a markdown page and one self-contained HTML page per training run.

What it shows, and why: per-fold and pooled C-index (or AUC) for every architecture on the SAME folds (clinical-only
beside multimodal, since clinical-only models often won on the hidden test), averaged over ALL repeats (fold mean ±
sd over every repeat's folds; the pooled out-of-fold metric of each repeat, averaged); the cohort-held-out rows beside
CV (cohort shift shows here before the platform shows it); which model was chosen and why (`model_choice`, a dict an
automatic selection fills in); the figures (train/report_figures.py), attention heatmaps of out-of-fold patients
(train/report_heatmaps.py) and, after the `audit` step, the InterSHAP section. Rendering: train/report_html.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from chimera_surv.survival.metrics import bootstrap_ci, harrell_c
from train.protocol import RunContext, oof_standardised

log = logging.getLogger("train.report")


def _metric_fn(ctx: RunContext):
    if ctx.survival:
        return lambda event, time, risk: harrell_c(event.astype(bool), time, risk)

    def auc(label, _unused, risk):
        from sklearn.metrics import roc_auc_score

        return float("nan") if label.min() == label.max() else float(roc_auc_score(label, risk))

    return auc


def _ci(ctx: RunContext, idx: list[int], risk: np.ndarray, n_boot: int) -> tuple[float, float, float]:
    data = ctx.data
    first = data.event[idx] if ctx.survival else data.label[idx]
    second = data.time[idx] if ctx.survival else np.zeros(len(idx))
    return bootstrap_ci(_metric_fn(ctx), first, second, np.asarray(risk), n_boot=n_boot, seed=0)


def cv_summary(ctx: RunContext, cv: list[dict[str, Any]], holdout: list[dict[str, Any]]) -> dict[str, Any]:
    """Per architecture: fold metrics, mean ± sd over every fold of every repeat, the pooled out-of-fold metric
    per repeat with a bootstrap CI, and their mean over repeats (the headline)."""
    n_boot = int(ctx.config["protocol"].get("bootstrap", 500))
    out: dict[str, Any] = {"metric": "c_index" if ctx.survival else "auc", "architectures": {}, "holdout": []}
    for arch in dict.fromkeys(r["arch"] for r in cv):
        rows = [r for r in cv if r["arch"] == arch]
        folds = [r["metric"] for r in rows]
        pooled = []
        for repeat in sorted({r["repeat"] for r in rows}):
            idx = [i for r in rows if r["repeat"] == repeat for i in r["test"]]
            risk = np.array([v for r in rows if r["repeat"] == repeat for v in r["risk"]])
            point, low, high = _ci(ctx, idx, risk, n_boot)
            pooled.append({"repeat": repeat, "value": point, "ci95": [low, high]})
        values = [p["value"] for p in pooled]
        out["architectures"][arch] = {
            "modalities": rows[0]["modalities"],
            "folds": [{"split": r["split"], "value": r["metric"], "best_epoch": r["best_epoch"],
                       "inner_val": r["inner_val_metric"]} for r in rows],
            "fold_mean": float(np.nanmean(folds)), "fold_sd": float(np.nanstd(folds)), "n_folds": len(folds),
            "pooled": pooled, "pooled_mean": float(np.mean(values)), "pooled_sd": float(np.std(values)),
            "pooled_ci95_mean": [float(np.mean([p["ci95"][k] for p in pooled])) for k in (0, 1)],
            "n_repeats": len(pooled),
        }
    for r in holdout:
        point, low, high = _ci(ctx, r["test"], np.asarray(r["risk"]), n_boot)
        cv_mean = out["architectures"].get(r["arch"], {}).get("fold_mean")
        out["holdout"].append({"arch": r["arch"], "split": r["split"], "n_test": len(r["test"]), "value": point,
                               "ci95": [low, high], "modalities": r["modalities"], "cv_fold_mean": cv_mean,
                               "drop_vs_cv": None if cv_mean is None else point - cv_mean})
    _clinical_beside(out["holdout"])
    return out


def _clinical_beside(rows: list[dict[str, Any]]) -> None:
    """Each cohort-held-out row gets the clinical-only architecture's value on the same split (the first
    architecture whose modalities are clinical alone), so a row shows what the other modalities add on a new site."""
    for row in rows:
        clinical = next((r for r in rows if r["split"] == row["split"] and r["modalities"] == ["clinical"]), None)
        row["clinical_only"] = None if clinical is None else {"arch": clinical["arch"], "value": clinical["value"]}


def model_choice(ctx: RunContext, summary: dict[str, Any]) -> dict[str, Any]:
    """Which architecture the bundle exports and why. With a fixed `model` the reason is the config; an automatic
    selection (`model: auto`) replaces `why` and `rule` and keeps the candidates' CV scores."""
    candidates = {name: {"pooled_mean": row["pooled_mean"], "fold_mean": row["fold_mean"],
                         "modalities": row["modalities"]} for name, row in summary["architectures"].items()}
    chosen = ctx.config.get("model") or {}
    auto = (summary.get("auto") or {}).get("exported")
    if auto:  # model: auto (train/auto.py): the choice was made on inner splits of the whole cohort
        inner = "leave-one-cohort-out" if auto["inner"] == "loco" else "stratified k-fold"
        return {"chosen": auto["chosen"], "architecture": chosen,
                "why": (f"`model: auto` chose {auto['chosen']} on {auto['n_inner_splits']} inner {inner} splits of "
                        "the whole cohort (no reported fold involved); inner scores: "
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
    """Task 2: each patient's CV out-of-fold logit, averaged over repeats."""
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


def _figures(ctx: RunContext, cv: list[dict[str, Any]], summary: dict[str, Any], out: Path) -> dict[str, Any]:
    """Draw every figure; returns {name: file} plus the numbers the figures show (log-rank p, calibration)."""
    from train import report_figures as rf

    metric = "C-index" if ctx.survival else "AUC"
    data = ctx.data
    made: dict[str, Any] = {"files": {}}
    model_rows = [r for r in cv if r["arch"] == "model"]
    if model_rows:
        made["files"]["training_curves"] = rf.training_curves(model_rows, metric, out / "training_curves.png")
    if not model_rows:
        return made
    if ctx.survival:
        score = oof_cv_score(ctx, cv)
        keep = np.isfinite(score)
        time, event = data.time[keep], data.event[keep]
        subtitle = f"CV out-of-fold, {summary['architectures']['model']['n_repeats']} repeat(s)"
        made["logrank_p"] = rf.km_by_risk_group(time, event, score[keep], out / "km_by_risk_group.png", subtitle)
        made["files"]["km_by_risk_group"] = "km_by_risk_group.png"
        horizons = ctx.config.get("report", {}).get("horizons") or rf.default_horizons(time)
        made["calibration"] = rf.calibration_at_horizons(time, event, score[keep], list(horizons),
                                                         out / "calibration_horizons.png")
        made["files"]["calibration_horizons"] = "calibration_horizons.png"
    else:
        logit = oof_cv_logit(ctx, cv)
        keep = np.isfinite(logit)
        label = data.label[keep]
        prob = cross_fitted_probability(logit[keep], label)
        auc = _ci(ctx, list(np.where(keep)[0]), prob, int(ctx.config["protocol"].get("bootstrap", 500)))
        made["files"]["roc"] = rf.roc_figure(label, prob, auc, out / "roc.png")
        made["files"]["reliability"] = rf.reliability(label, prob, out / "reliability.png")
        made["files"]["f1_threshold"] = rf.f1_vs_threshold(label, prob, out / "f1_threshold.png")
    return made


def write_report(ctx: RunContext, cv: list[dict[str, Any]], holdout: list[dict[str, Any]],
                 members: list[dict[str, Any]], out: Path, slides: dict[str, list[Any]] | None = None) -> Path:
    """report.json, report.md, report.html and the figures under `out`; `slides` (case id → SlideInput list)
    enables the out-of-fold attention heatmaps. Returns the HTML page."""
    out.mkdir(parents=True, exist_ok=True)
    summary = cv_summary(ctx, cv, holdout)
    oof = oof_standardised(ctx, members)
    first = ctx.data.event if ctx.survival else ctx.data.label
    ensemble = {"oof_metric": float(_metric_fn(ctx)(first, ctx.data.time, oof)),
                "members": [{"name": m["name"], "best_epoch": m["best_epoch"]} for m in members],
                # holdout: a member's own held-out fold also stopped it (optimistic); inner_cv: that fold stays unseen
                "stopping": ctx.config["train"].get("stopping", "holdout")}
    summary["ensemble"] = ensemble
    if members and members[0].get("auto"):  # model: auto — what it chose and on which inner scores
        from train.auto import auto_report

        summary["auto"] = auto_report(members, cv)
    summary["model_choice"] = model_choice(ctx, summary)
    made = _figures(ctx, cv, summary, out)
    summary["figures"] = made.pop("files")
    summary["figure_numbers"] = made
    if slides and "wsi" in ctx.data.modalities and int(ctx.config.get("report", {}).get("heatmaps", 0)) > 0:
        from train.report_heatmaps import heatmaps_note, oof_heatmaps

        try:  # a slide that cannot be drawn costs its heatmap, not the report
            summary["heatmaps"] = oof_heatmaps(ctx, members, slides, out / "heatmaps",
                                               int(ctx.config["report"]["heatmaps"]))
            if not summary["heatmaps"]:
                summary["heatmaps_note"] = heatmaps_note(members)
        except Exception as exc:  # noqa: BLE001
            log.warning("report: attention heatmaps skipped: %s: %s", type(exc).__name__, exc)
            summary["heatmaps_error"] = f"{type(exc).__name__}: {exc}"
    audit = out / "audit" / "summary.json"  # an earlier `audit` step of the same config: keep its section
    if audit.is_file() and json.loads(audit.read_text()).get("config_hash") == ctx.config_hash:
        summary["intershap_audit"] = json.loads(audit.read_text())
    _write(out, summary)
    return out / "report.html"


def _write(out: Path, summary: dict[str, Any]) -> None:
    """report.md and report.html are rendered from report.json alone, so a later step can add a section."""
    from train.audit import markdown as audit_markdown
    from train.report_html import render_html, render_markdown

    if summary.get("intershap_audit"):
        from train.report_figures import intershap_figure

        summary["figures"]["intershap"] = intershap_figure(summary["intershap_audit"], out / "intershap.png")
    text = render_markdown(summary)
    if summary.get("auto"):
        from train.auto import auto_markdown

        text += "\n" + auto_markdown(summary["auto"])
    if summary.get("intershap_audit"):
        text += "\n" + audit_markdown(summary["intershap_audit"])
    (out / "report.json").write_text(json.dumps(summary, indent=1, default=float))
    (out / "report.md").write_text(text)
    (out / "report.html").write_text(render_html(summary, out))


def attach_audit(out: Path, audit: dict[str, Any]) -> bool:
    """Add (or replace) the InterSHAP audit section of an existing report; False when no report exists yet
    (the `report` step picks the audit up when it runs)."""
    path = out / "report.json"
    if not path.is_file():
        return False
    summary = json.loads(path.read_text())
    summary["intershap_audit"] = audit
    _write(out, summary)
    return True
