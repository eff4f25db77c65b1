"""Render report.json as markdown (report.md) and as one self-contained HTML page (report.html).

Why from the JSON alone: the `audit` step adds its section to an existing report and re-renders both pages without
re-running the CV. The HTML inlines every figure (chimera_surv/htmlpage.py), so the page is the whole report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chimera_surv.htmlpage import esc, img, page, table

CAPTIONS = {
    "km_by_risk_group": ("Kaplan–Meier curves of the patients grouped by tertile of their out-of-fold predicted risk "
                         "(each patient scored by a CV model that never saw it; percentile within its fold, averaged "
                         "over repeats). Shaded: 95% CI; ticks: censored patients; table: numbers at risk."),
    "calibration_horizons": ("Predicted against observed event-free probability at fixed horizons, per risk tertile. "
                             "Predicted: a one-covariate Cox model (Breslow baseline) on the out-of-fold risk, "
                             "cross-fitted so no patient is predicted by a fit that included it. Observed: "
                             "Kaplan–Meier with 95% CI."),
    "training_curves": ("Training loss and the inner-validation metric per epoch for every CV fold of the exported "
                        "architecture; triangles mark the epoch early stopping chose (inner split only)."),
    "roc": "ROC of the out-of-fold P(BRS3) (cross-fitted Platt scaling of the CV logits); the dot is threshold 0.5.",
    "reliability": "Observed BRS3 fraction against predicted probability in quantile bins (Wilson 95% CI).",
    "f1_threshold": "F1 against the decision threshold; the evaluator thresholds the submitted probability at 0.5.",
    "intershap": ("How much of the prediction each data type carries on its own and how much only their "
                  "combination carries (InterSHAP, mean ± SD over the ensemble members)."),
}


def _metric_name(summary: dict[str, Any]) -> str:
    return "C-index" if summary["metric"] == "c_index" else "AUC"


def _cv_rows(summary: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, row in summary["architectures"].items():
        low, high = row["pooled_ci95_mean"]
        rows.append([name, "+".join(row["modalities"]), f"{row['fold_mean']:.3f} ± {row['fold_sd']:.3f}",
                     f"{row['pooled_mean']:.3f} ± {row['pooled_sd']:.3f}", f"{low:.3f}–{high:.3f}",
                     f"{row['n_repeats']} × {row['n_folds'] // max(row['n_repeats'], 1)}"])
    return rows


CV_HEADERS = ["architecture", "modalities", "fold mean ± sd (all folds)", "pooled, mean ± sd over repeats",
              "pooled 95% CI (mean over repeats)", "repeats × folds"]


def _holdout_rows(summary: dict[str, Any]) -> list[list[Any]]:
    def number(value: Any, fmt: str = ".3f") -> str:
        return "—" if value is None else format(value, fmt)

    rows = []
    for r in summary["holdout"]:
        clinical = r.get("clinical_only")
        rows.append([r["arch"], r["split"], r["n_test"], f"{r['value']:.3f}", f"{r['ci95'][0]:.3f}–{r['ci95'][1]:.3f}",
                     number(r.get("cv_fold_mean")), number(r.get("drop_vs_cv"), "+.3f"),
                     "—" if clinical is None else f"{clinical['value']:.3f} ({clinical['arch']})"])
    return rows


def holdout_headers(metric: str) -> list[str]:
    return ["architecture", "split", "n test", metric, "95% CI", "CV fold mean", "held-out − CV",
            "clinical-only, same split"]


def _choice_rows(summary: dict[str, Any]) -> list[list[Any]]:
    choice = summary.get("model_choice") or {}
    rows = [["chosen", choice.get("chosen", "model")], ["why", choice.get("why", "")]]
    if choice.get("rule"):
        rows.append(["rule", choice["rule"]])
    return rows


def _stopping_words(summary: dict[str, Any]) -> str:
    """How the number of epochs was chosen (train.stopping), in one sentence."""
    if summary.get("ensemble", {}).get("stopping") == "inner_cv":
        return ("The number of epochs was chosen by inner cross-validation of each training fold, then the network "
                "was refitted on the whole training fold.")
    return "Early stopping used an inner split of each training fold only."


def _oof_caveat(summary: dict[str, Any]) -> str:
    """Whether the exported members' out-of-fold figure is optimistic (their held-out fold also stopped them)."""
    if summary.get("ensemble", {}).get("stopping") == "inner_cv":
        return "that fold was not used to train or stop the member"
    return "that fold also stopped the member, so this is optimistic and not a validation score"


def render_markdown(summary: dict[str, Any]) -> str:
    metric = _metric_name(summary)
    lines = ["# Training report", "",
             (f"Metric: **{metric}**. {_stopping_words(summary)} Model selection and preprocessing used the training "
              "fold only. Differences below ~0.05 are noise at this "
              "cohort size. Headline numbers average ALL repeats."), "",
             "## Model chosen", ""] + [f"- {k}: {v}" for k, v in _choice_rows(summary)] + [
             "", "## Cross-validation (same folds for every architecture)", "",
             "| " + " | ".join(CV_HEADERS) + " |", "|" + "---|" * len(CV_HEADERS)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in _cv_rows(summary)]
    lines += ["", "## Cohort-held-out (train on one cohort, test on the other)", "",
              ("Transfer to a site the model never saw: each row's drop against its own CV fold mean, and the "
               "clinical-only architecture on the same split beside it (— where the config compares none)."), ""]
    if summary["holdout"]:
        headers = holdout_headers(metric)
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in _holdout_rows(summary)]
    else:
        lines.append("Only one cohort in the data: no cohort-held-out rows.")
    lines += ["", "## Exported ensemble", "",
              (f"Out-of-fold {metric} of the ensemble members (each patient scored by the member that did not "
               f"train on it; {_oof_caveat(summary)}): {summary['ensemble']['oof_metric']:.3f}."), "",
              "Figures: " + ", ".join(f"`{f}`" for f in summary.get("figures", {}).values())
              + ". The whole report with every figure: `report.html`.", ""]
    return "\n".join(lines)


def _calibration_table(rows: list[dict[str, Any]]) -> str:
    return table(["horizon (months)", "risk group", "n", "predicted", "observed (KM)", "95% CI"],
                 [[r["horizon"], r["group"], r["n"], r["predicted"], r["observed"],
                   f"{r['ci95'][0]:.3f}–{r['ci95'][1]:.3f}"] for r in rows])


def _audit_section(audit: dict[str, Any]) -> str:
    mods = audit["modalities"]
    rows = []
    for masker, ests in audit["maskers"].items():
        for name, e in ests.items():
            rows.append([masker, name, f"{e['interaction_pct']['mean']:.2f} ± {e['interaction_pct']['sd']:.2f}"]
                        + [f"{e['shares_pct'][m]['mean']:.1f} ± {e['shares_pct'][m]['sd']:.1f}"
                           if m in e["shares_pct"] else "–" for m in mods])
    return ("<h2>What the prediction rests on (InterSHAP audit)</h2>"
            f"<p class=\"note\">Each exported member explained on its held-out fold against its training fold; "
            f"{len(audit['members'])} members. The masker is what an absent data type is replaced by.</p>"
            + table(["masker", "estimator", "interaction %"] + [f"{m} %" for m in mods], rows))


def render_html(summary: dict[str, Any], out: Path) -> str:
    """The whole report as one page; figures are read from `out` and inlined."""
    metric = _metric_name(summary)
    figures = summary.get("figures", {})
    numbers = summary.get("figure_numbers", {})
    body = [(f"<p class=\"note\">Metric: <b>{metric}</b>. Preprocessing fitted inside each training fold only. "
            f"{_stopping_words(summary)} Headline numbers average all repeats. Differences below ~0.05 are noise at "
            "this cohort size.</p>"),
            "<h2>Model chosen and why</h2>", table(["item", "value"], _choice_rows(summary))]
    candidates = (summary.get("model_choice") or {}).get("candidates") or {}
    if candidates:
        body.append(table(["candidate", f"pooled {metric} (mean over repeats)", "fold mean", "modalities"],
                          [[k, v["pooled_mean"], v["fold_mean"], "+".join(v["modalities"])]
                           for k, v in candidates.items()]))
    body += ["<h2>Cross-validation (same folds for every architecture)</h2>", table(CV_HEADERS, _cv_rows(summary)),
             "<h2>Cohort-held-out (train on one cohort, test on the other)</h2>"]
    body.append(table(holdout_headers(metric), _holdout_rows(summary))
                if summary["holdout"] else "<p>Only one cohort in the data: no cohort-held-out rows.</p>")
    body.append(f"<h2>Exported ensemble</h2><p>Out-of-fold {metric} of the members: "
                f"{summary['ensemble']['oof_metric']:.3f} ({_oof_caveat(summary)}).</p>")
    body.append("<h2>Figures</h2>")
    if "logrank_p" in numbers:
        body.append(f"<p>Log-rank test across the three risk groups: p = {numbers['logrank_p']:.3g}.</p>")
    for key, name in figures.items():
        if (out / name).is_file():
            body.append(img(out / name, CAPTIONS.get(key, key)))
    if numbers.get("calibration"):
        body.append(_calibration_table(numbers["calibration"]))
    heatmaps = summary.get("heatmaps") or []
    if heatmaps:
        from chimera_surv.explain import NOTES

        kinds = sorted({h.get("kind", "attention") for h in heatmaps})
        title = " and ".join("attention" if k == "attention" else "risk change when a patch is left out"
                             for k in kinds)
        body.append(f"<h2>Slide heatmaps: {esc(title)} (out-of-fold patients)</h2><p class=\"note\">Each patient "
                    "drawn by the ensemble member that did not train on it. "
                    + " ".join(esc(NOTES[k]) for k in kinds) + "</p>")
        for h in heatmaps:
            path = out / h["file"]
            what = "attention" if h.get("kind", "attention") == "attention" else "risk change when left out"
            if path.is_file():
                body.append(img(path, f"{h['case_id']}: {what}; out-of-fold risk percentile {h['risk_pct']:.0f}, "
                                      f"{h['member']}"))
    if summary.get("heatmaps_note"):
        body.append(f"<h2>Slide heatmaps</h2><p class=\"note\">No slide heatmaps: {esc(summary['heatmaps_note'])}."
                    "</p>")
    if summary.get("heatmaps_error"):
        body.append(f"<p class=\"note\">Slide heatmaps could not be drawn: {esc(summary['heatmaps_error'])}</p>")
    if summary.get("intershap_audit"):
        body.append(_audit_section(summary["intershap_audit"]))
    return page("Training report", "".join(body))
