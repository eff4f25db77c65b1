"""Step `report`: report.json, then report.md and one self-contained report.html rendered from it alone.

What it shows, and why: per-fold and pooled C-index (or AUC) for every architecture on the SAME folds (clinical-only
beside multimodal, since clinical-only models often won on the hidden test), averaged over ALL repeats; the
cohort-held-out rows beside CV (cohort shift shows here before the platform shows it); which model was chosen and
why; the full survival evaluation of the out-of-fold scores; the clinical model's coefficients or permutation
importance; the figures (figures.py), out-of-fold slide heatmaps (heatmaps.py) and, after the `audit` step, the
InterSHAP section. Numbers: numbers.py; sections: sections.py; pages: render.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from train.protocol import RunContext, oof_standardised
from train.report.numbers import (
    cross_fitted_probability,
    cv_summary,
    distinct_horizons,
    exported_family,
    metric_ci,
    metric_fn,
    model_choice,
    oof_cv_logit,
    oof_cv_score,
)
from train.survival_curve import survival_curve_clip

log = logging.getLogger("train.report")
__all__ = ["attach_audit", "cv_summary", "write_report"]


def _figures(ctx: RunContext, cv: list[dict[str, Any]], summary: dict[str, Any], out: Path) -> dict[str, Any]:
    """Draw every figure that has something to show; returns {name: file} plus the numbers the figures show
    (log-rank p, calibration rows, the ROC curve's AUC), so the tables print exactly what is drawn."""
    from train.report import figures as rf

    metric = "C-index" if ctx.survival else "AUC"
    data = ctx.data
    made: dict[str, Any] = {"files": {}}
    model_rows = [r for r in cv if r["arch"] == "model"]
    if not model_rows:
        return made
    if any(r.get("history") for r in model_rows):  # networks only: a classical fit has no epochs
        made["files"]["training_curves"] = rf.training_curves([r for r in model_rows if r.get("history")], metric,
                                                              out / "training_curves.png")
    if ctx.survival:
        score = oof_cv_score(ctx, cv)
        keep = np.isfinite(score)
        time, event = data.time[keep], data.event[keep]
        subtitle = f"CV out-of-fold, {summary['architectures']['model']['n_repeats']} repeat(s)"
        made["logrank_p"] = rf.km_by_risk_group(time, event, score[keep], out / "km_by_risk_group.png", subtitle)
        made["files"]["km_by_risk_group"] = "km_by_risk_group.png"
        horizons = distinct_horizons(ctx.config.get("report", {}).get("horizons"), time, event)
        made["horizons"] = horizons
        made["calibration"] = rf.calibration_at_horizons(time, event, score[keep], horizons,
                                                         out / "calibration_horizons.png",
                                                         clip_mad=survival_curve_clip(ctx.config))
        made["files"]["calibration_horizons"] = "calibration_horizons.png"
    else:
        logit = oof_cv_logit(ctx, cv)
        keep = np.isfinite(logit)
        label = data.label[keep]
        prob = cross_fitted_probability(logit[keep], label)
        auc = metric_ci(ctx, list(np.where(keep)[0]), prob, int(ctx.config["protocol"].get("bootstrap", 500)))
        made["roc_auc"] = {"value": auc[0], "ci95": [auc[1], auc[2]]}
        made["files"]["roc"] = rf.roc_figure(label, prob, auc, out / "roc.png")
        made["files"]["reliability"] = rf.reliability(label, prob, out / "reliability.png")
        made["files"]["f1_threshold"] = rf.f1_vs_threshold(label, prob, out / "f1_threshold.png")
    return made


def _evaluation(ctx: RunContext, cv: list[dict[str, Any]], horizons: list[float] | None) -> dict[str, Any] | None:
    """Harrell's and Uno's C, time-dependent AUC, IBS, D-calibration and bootstrap CIs of the exported
    architecture's out-of-fold CV risk of the first repeat (chimera_surv/survival/evaluation.py), the whole cohort as
    the censoring reference; the survival curves the IBS and D-calibration need come from the calibration figure's
    cross-fitted one-covariate Cox model on that risk."""
    if not ctx.survival:
        return None
    try:
        from chimera_surv.survival.evaluation import evaluate_survival
    except ImportError:
        return {"error": "chimera_surv/survival/evaluation.py is not available in this version"}
    rows = [r for r in cv if r["arch"] == "model" and r["repeat"] == min(x["repeat"] for x in cv)]
    if not rows:
        return None
    idx = np.array([i for r in rows for i in r["test"]])
    risk = np.array([v for r in rows for v in r["risk"]], dtype=float)
    data = ctx.data
    try:
        from train.report.figures import cross_fitted_survival

        # survival curves for the IBS and D-calibration: the report's cross-fitted Cox-Breslow map of the same risk
        grid = np.unique(np.quantile(data.time[idx], np.linspace(0.02, 0.98, 40)))
        surv = cross_fitted_survival(data.time[idx], data.event[idx], risk, list(grid),
                                     clip_mad=survival_curve_clip(ctx.config))
        result = evaluate_survival(data.time, data.event.astype(bool), data.time[idx], data.event[idx].astype(bool),
                                   risk, surv=surv, surv_times=grid, horizons=horizons,
                                   n_boot=int(ctx.config["protocol"].get("bootstrap", 200)), seed=0, time_unit="months")
    except Exception as exc:  # noqa: BLE001 - a metric that cannot be computed costs its section, not the report
        log.warning("report: survival evaluation skipped: %s: %s", type(exc).__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {**json.loads(json.dumps(result, default=float)), "repeat": int(rows[0]["repeat"]), "n": len(idx)}


def write_report(ctx: RunContext, cv: list[dict[str, Any]], holdout: list[dict[str, Any]],
                 members: list[dict[str, Any]], out: Path, slides: dict[str, list[Any]] | None = None) -> Path:
    """report.json, report.md, report.html and the figures under `out`; `slides` (case id → SlideInput list)
    enables the out-of-fold heatmaps. Returns the HTML page."""
    out.mkdir(parents=True, exist_ok=True)
    summary = cv_summary(ctx, cv, holdout)
    oof = oof_standardised(ctx, members)
    first = ctx.data.event if ctx.survival else ctx.data.label
    ensemble = {"oof_metric": float(metric_fn(ctx)(first, ctx.data.time, oof)),
                "members": [{"name": m["name"], "best_epoch": m["best_epoch"]} for m in members],
                "modalities": list(dict.fromkeys(x for m in members for x in m.get("modalities", []))),
                "family": exported_family(members),
                # holdout: a member's own held-out fold also stopped it (optimistic); inner_cv: that fold stays unseen
                "stopping": ctx.config["train"].get("stopping", "holdout"),
                # what the CV folds of `model` predicted with (auto.cv_model; absent for networks)
                "cv_model": next((r["cv_model"] for r in cv if r["arch"] == "model" and "cv_model" in r), None)}
    summary["ensemble"] = ensemble
    summary["n_patients"] = len(ctx.data)
    summary["clinical_missing"] = list(getattr(ctx.data, "clinical_missing", None) or [])
    if members and members[0].get("auto"):  # model: auto — what it chose and on which inner scores
        summary["auto"] = _auto_report(members, cv)
    summary["model_choice"] = model_choice(ctx, summary)
    made = _figures(ctx, cv, summary, out)
    summary["figures"] = made.pop("files")
    summary["figure_numbers"] = made
    summary["evaluation"] = _evaluation(ctx, cv, made.get("horizons"))
    try:  # what the clinical model rests on: coefficients (linear) or permutation importance (trees)
        from train.report.coefficients import model_terms

        summary["model_terms"] = model_terms(ctx, members)
    except Exception as exc:  # noqa: BLE001
        log.warning("report: coefficient table skipped: %s: %s", type(exc).__name__, exc)
        summary["model_terms"] = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        from train.report.importance import permutation_importance

        summary["tree_importance"] = permutation_importance(ctx, members, int(ctx.config.get("seed", 0)))
    except Exception as exc:  # noqa: BLE001
        log.warning("report: permutation importance skipped: %s: %s", type(exc).__name__, exc)
        summary["tree_importance"] = {"error": f"{type(exc).__name__}: {exc}"}
    if slides and "wsi" in ctx.data.modalities and int(ctx.config.get("report", {}).get("heatmaps", 0)) > 0:
        from train.report.heatmaps import heatmaps_note, oof_heatmaps

        try:  # a slide that cannot be drawn costs its heatmap, not the report
            summary["heatmaps"] = oof_heatmaps(ctx, members, slides, out / "heatmaps",
                                               int(ctx.config["report"]["heatmaps"]))
            if not summary["heatmaps"]:
                summary["heatmaps_note"] = heatmaps_note(members)
        except Exception as exc:  # noqa: BLE001
            log.warning("report: slide heatmaps skipped: %s: %s", type(exc).__name__, exc)
            summary["heatmaps_error"] = f"{type(exc).__name__}: {exc}"
    # an earlier `audit` or `anchors` step of the same config: keep its section
    for key, path in (("intershap_audit", out / "audit" / "summary.json"),
                      ("anchors", out.parent / "anchors" / "anchors.json")):
        earlier = json.loads(path.read_text()) if path.is_file() else {}
        if earlier.get("config_hash") == ctx.config_hash:
            summary[key] = earlier
    _write(out, summary)
    return out / "report.html"


def _auto_report(members: list[dict[str, Any]], cv: list[dict[str, Any]]) -> dict[str, Any]:
    """The automatic choice's record (train/selection/record.py)."""
    from train.selection import auto_report

    return auto_report(members, cv)


def _write(out: Path, summary: dict[str, Any]) -> None:
    """report.md and report.html are rendered from report.json alone, so a later step can add a section."""
    from train.report.render import render_html, render_markdown

    if summary.get("intershap_audit"):
        from train.report.figures import intershap_figure

        summary["figures"]["intershap"] = intershap_figure(summary["intershap_audit"], out / "intershap.png")
    (out / "report.json").write_text(json.dumps(summary, indent=1, default=float))
    (out / "report.md").write_text(render_markdown(summary))
    (out / "report.html").write_text(render_html(summary, out))


def attach_audit(out: Path, audit: dict[str, Any]) -> bool:
    """Add (or replace) the InterSHAP audit section of an existing report; False when no report exists yet
    (the `report` step picks the audit up when it runs)."""
    return _attach(out, "intershap_audit", audit)


def attach_anchors(out: Path, anchors: dict[str, Any]) -> bool:
    """Add (or replace) the scikit-survival anchors section (train/anchors.py) of an existing report; False when
    no report exists yet (the `report` step picks `anchors/anchors.json` up when it runs)."""
    return _attach(out, "anchors", anchors)


def _attach(out: Path, key: str, section: dict[str, Any]) -> bool:
    path = out / "report.json"
    if not path.is_file():
        return False
    summary = json.loads(path.read_text())
    summary[key] = section
    _write(out, summary)
    return True
