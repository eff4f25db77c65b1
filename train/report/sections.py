"""Every section of the training report, each built once from report.json as blocks that render.py writes both
as markdown and as HTML, so the two pages always carry the same sections and the same numbers.

Blocks: P(text), Table(headers, rows of preformatted strings), Figure(file, caption), Details(summary, blocks).
A section returns (title, blocks), or None when it has nothing true to say for this run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class P:
    text: str
    note: bool = False


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    file: str
    caption: str


@dataclass
class Details:
    summary: str
    blocks: list[Any] = field(default_factory=list)


Section = tuple[str, list[Any]]


def metric_name(summary: dict[str, Any]) -> str:
    return "C-index" if summary["metric"] == "c_index" else "AUC"


def spread(mean: float, sd: float, n: int) -> str:
    """'mean ± sd', or the value alone when there is one value (no '± 0.000' for a single repeat)."""
    return f"{mean:.3f} ± {sd:.3f}" if n > 1 else f"{mean:.3f} (one value)"


def _num(value: Any, fmt: str = ".3f") -> str:
    return "—" if value is None else format(value, fmt)


def _is_network(summary: dict[str, Any]) -> bool:
    return (summary.get("ensemble") or {}).get("family", "network") in ("network", "mixed")


COMMITTEE_WORDS = {  # auto.cv_model: what each CV fold's figure was predicted with
    "committee": (" Each CV fold's figure comes from the committee of the models fitted on that fold's inner "
                  "training parts, averaged, as the bundle averages its members (auto.cv_model: committee)."),
    "refit": " Each CV fold's figure comes from one model refitted on the whole training fold (auto.cv_model: refit).",
}


def stopping_words(summary: dict[str, Any]) -> str:
    """How training length was chosen, true for the exported family."""
    if not _is_network(summary):
        return ("The exported model is a classical family (fitted by its own solver, no epochs and no early "
                "stopping); its settings were chosen inside each training fold only." + COMMITTEE_WORDS.get(
                    summary.get("ensemble", {}).get("cv_model"), ""))
    if summary.get("ensemble", {}).get("stopping") == "inner_cv":
        return ("The number of epochs was chosen by inner cross-validation of each training fold, then the network "
                "was refitted on the whole training fold.")
    return "Early stopping used an inner split of each training fold only."


def oof_caveat(summary: dict[str, Any]) -> str:
    """Whether the exported members' out-of-fold figure is optimistic (their held-out fold also stopped them)."""
    if not _is_network(summary) or summary.get("ensemble", {}).get("stopping") == "inner_cv":
        return "that fold was not used to train or stop the member"
    return "that fold also stopped the member, so this is optimistic and not a validation score"


def about(summary: dict[str, Any]) -> Section:
    metric = metric_name(summary)
    what = ("Harrell's concordance index, the share of comparable patient pairs the model orders correctly (0.5 = "
            "chance, 1 = perfect)" if metric == "C-index" else
            "area under the ROC curve, the chance a positive patient scores above a negative one (0.5 = chance)")
    return ("About these numbers", [P(
        f"Metric: {metric} ({what}). {stopping_words(summary)} Preprocessing was fitted inside each training fold "
        f"only. The protocol's headline figure is the fold mean over every fold of every repeat. Differences below "
        f"about 0.05 are noise at {summary.get('n_patients', 'this')} patients.")])


def model_chosen(summary: dict[str, Any]) -> Section:
    metric = metric_name(summary)
    choice = summary.get("model_choice") or {}
    rows = [["chosen", str(choice.get("chosen", "model"))], ["why", str(choice.get("why", ""))]]
    if choice.get("rule"):
        rows.append(["rule", str(choice["rule"])])
    ens = summary.get("ensemble") or {}
    if ens.get("modalities"):
        rows.append(["the exported bundle uses", "+".join(ens["modalities"])])
    blocks: list[Any] = [Table(["item", "value"], rows)]
    candidates = choice.get("candidates") or {}
    if candidates:
        blocks.append(Table(["candidate", f"{metric} fold mean (the protocol's figure)", "pooled, mean over repeats",
                             "modalities (per fold)"],
                            [[k, f"{v['fold_mean']:.3f}", f"{v['pooled_mean']:.3f}",
                              v.get("modalities_label") or "+".join(v["modalities"])] for k, v in candidates.items()]))
    return ("Model chosen and why", blocks)


def _setting_words(setting: Any) -> str:
    """A family's chosen setting as `name value` pairs (`alpha_ratio 0.1, l1_ratio 0.5`), not a Python dict."""
    if not isinstance(setting, dict):
        return str(setting)
    if not setting:
        return "defaults"
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in setting.items())


def auto_choice(summary: dict[str, Any]) -> Section | None:
    """`model: auto`: the first member's inner scores, what each member and each CV fold chose, and why."""
    section = summary.get("auto")
    if not section:
        return None
    exported = section["exported"]
    inner = ("repeated stratified k-fold pooled with leave-one-cohort-out" if exported["inner"] == "kfold+loco"
             else "repeated stratified k-fold")
    blocks: list[Any] = [P(
        f"Exported (first member): {exported['chosen']}, chosen on {exported['n_inner_splits']} inner {inner} "
        f"splits of the member's training part (no reported fold is involved); rule: {exported.get('rule')}. "
        "Settings per family: " + "; ".join(f"{k} ({_setting_words(v)})"
                                            for k, v in (exported.get("settings") or {}).items()) + "."),
        Table(["option", "mean inner score"],
              [[f"{k}{' (chosen)' if k == exported['chosen'] else ''}", f"{v:.4f}"]
               for k, v in sorted(exported["scores"].items(), key=lambda kv: -kv[1])])]
    if exported.get("dropped_candidates"):
        blocks.append(P("Left out of the choice (their modality is too sparse to fit on some inner training part): "
                        + "; ".join(f"{k}: {v}" for k, v in exported["dropped_candidates"].items()) + "."))
    if exported.get("rna_within_scores"):
        tried = ", ".join(f"{k} {v:.4f}" for k, v in exported["rna_within_scores"].items())
        blocks.append(P(f"RNA within-sample transform: {exported['rna_within']} (best inner leave-one-cohort-out "
                        f"score per transform: {tried}; another transform replaces the configured one only when its "
                        "mean paired gain over the held-out cohorts exceeds one standard error)."))
    if section.get("member_choices"):
        counts = ", ".join(f"{k} × {v}" for k, v in section["member_choices"].items())
        blocks.append(P("Each exported member chose on its own training part's inner splits (so its held-out risks, "
                        f"which fit the calibration, come from a choice that never saw those patients): {counts}. "
                        "The table above is the first member's."))
    if section.get("cv_choices"):
        counts = ", ".join(f"{k} × {v}" for k, v in section["cv_choices"].items())
        blocks.append(P(f"Inside the CV (each outer training part chose on its own inner splits): {counts}."))
    return ("Automatic model choice (model: auto)", blocks)


def cross_validation(summary: dict[str, Any]) -> Section:
    rows = []
    for name, row in summary["architectures"].items():
        low, high = row["pooled_ci95_mean"]
        rows.append([name, row.get("modalities_label") or "+".join(row["modalities"]),
                     spread(row["fold_mean"], row["fold_sd"], row["n_folds"]),
                     spread(row["pooled_mean"], row["pooled_sd"], row["n_repeats"]), f"{low:.3f}–{high:.3f}",
                     f"{row['n_repeats']} × {row['n_folds'] // max(row['n_repeats'], 1)}"])
    return ("Cross-validation (same folds for every architecture)", [
        Table(["architecture", "modalities its fold models used", "fold mean ± sd (all folds)",
               "pooled, mean ± sd over repeats", "pooled 95% CI (mean over repeats)", "repeats × folds"], rows),
        P("Fold mean: the metric on each held-out fold, averaged (the protocol's figure). Pooled: all out-of-fold "
          "predictions of one repeat scored together, then averaged over repeats.", note=True)])


READING = {
    "harrell_c": "Harrell's C: share of comparable pairs ordered correctly; 0.5 = chance.",
    "uno_c": "Uno's C: the same, weighted for censoring so late follow-up counts fairly; 0.5 = chance.",
    "td_auc": "Time-dependent AUC at a horizon: how well the risk separates patients with an event by then from "
              "those still event-free after it; 0.5 = chance.",
    "ibs": "Integrated Brier score: mean squared error of the predicted event-free probability over time; lower is "
           "better, about 0.25 is no better than a coin.",
    "d_calibration": "D-calibration: whether predicted survival probabilities are uniformly spread as they should "
                     "be; a small p-value (below 0.05) means miscalibrated.",
}


def evaluation(summary: dict[str, Any]) -> Section | None:
    ev = summary.get("evaluation")
    if not ev:
        return None
    if ev.get("error"):
        return ("Survival evaluation", [P(f"Not computed: {ev['error']}.", note=True)])
    ci = ev.get("ci95") or {}

    def with_ci(key: str, value: Any) -> str:
        if value is None:
            return "—"
        bounds = ci.get(key)
        return f"{value:.3f}" + (f" ({bounds[0]:.3f}–{bounds[1]:.3f})" if bounds else "")

    rows = [["Harrell's C", with_ci("harrell_c", ev.get("harrell_c")), READING["harrell_c"]],
            ["Uno's C", with_ci("uno_c", ev.get("uno_c")), READING["uno_c"]]]
    for horizon, value in (ev.get("td_auc") or {}).items():
        unit = "month" if float(horizon) == 1 else "months"
        rows.append([f"time-dependent AUC at {float(horizon):g} {unit}", with_ci(f"td_auc@{float(horizon):g}", value),
                     READING["td_auc"]])
    if ev.get("ibs") is not None:
        rows.append(["integrated Brier score", with_ci("ibs", ev["ibs"]), READING["ibs"]])
        if ev.get("ibs_km") is not None:
            worse = ev["ibs"] > ev["ibs_km"]
            rows.append(["integrated Brier score of the Kaplan–Meier curve (no model)", f"{ev['ibs_km']:.3f}",
                         "The same score for one curve for everyone: the model should be lower."
                         + (f" Here it is not ({ev['ibs']:.3f} against {ev['ibs_km']:.3f}): the model's survival "
                            "curves are no better calibrated than the cohort's own curve." if worse else "")])
    dcal = ev.get("d_calibration") or {}
    if dcal:
        rows.append(["D-calibration", (f"χ² {dcal.get('statistic', float('nan')):.2f}, p = "
                     f"{dcal.get('p_value', float('nan')):.3g}"), READING["d_calibration"]])
    blocks: list[Any] = [Table(["measure", "value (bootstrap 95% CI)", "how to read it"], rows),
                         P(f"The exported architecture's out-of-fold CV risk, repeat {ev.get('repeat', 0)}, "
                           f"{ev.get('n', '?')} patients; the whole cohort is the censoring reference.", note=True)]
    if ev.get("notes"):
        blocks.append(P("Notes: " + "; ".join(map(str, ev["notes"])), note=True))
    return ("Survival evaluation (out-of-fold)", blocks)


def cohort_held_out(summary: dict[str, Any]) -> Section:
    metric = metric_name(summary)
    if not summary["holdout"]:
        return ("Cohort-held-out (train on one cohort, test on the other)",
                [P("Only one cohort in the data: no cohort-held-out rows.")])
    rows = []
    for r in summary["holdout"]:
        clinical = r.get("clinical_only")
        rows.append([r["arch"], "+".join(r["modalities"]), r["split"], str(r["n_test"]), f"{r['value']:.3f}",
                     f"{r['ci95'][0]:.3f}–{r['ci95'][1]:.3f}", _num(r.get("cv_fold_mean")),
                     _num(r.get("drop_vs_cv"), "+.3f"),
                     "—" if clinical is None else f"{clinical['value']:.3f} ({clinical['arch']})"])
    return ("Cohort-held-out (train on one cohort, test on the other)", [
        P("Transfer to a site the model never saw: each row's change against its own CV fold mean, and beside it a "
          "different, clinical-only architecture on the same split (a dash where the config ran none)."),
        Table(["architecture", "modalities", "split", "n test", metric, "95% CI", "CV fold mean", "held-out − CV",
               "clinical-only comparator, same split"], rows)])


def exported_ensemble(summary: dict[str, Any]) -> Section:
    ens = summary["ensemble"]
    metric = metric_name(summary)
    return ("Exported ensemble", [P(
        f"{len(ens['members'])} members using {'+'.join(ens.get('modalities') or []) or '?'}. Out-of-fold {metric} "
        f"of the members (each patient scored by the member that did not train on it; {oof_caveat(summary)}): "
        f"{ens['oof_metric']:.3f}.")])


def model_terms(summary: dict[str, Any]) -> Section | None:
    terms = summary.get("model_terms")
    if not terms:
        return None
    if terms.get("error"):
        return ("Clinical variables", [P(f"Not computed: {terms['error']}.", note=True)])
    rows = [[r["term"], f"{r['effect']:.2f}", f"{r['ci95'][0]:.2f}–{r['ci95'][1]:.2f}",
             "—" if r.get("p") is None else f"{r['p']:.2g}"] for r in terms["rows"]]
    return ("Clinical variables: association per SD", [
        P(f"{terms['method']}. {terms['effect'][0].upper() + terms['effect'][1:]}: above 1 = a higher value goes with a worse outcome. "
          "This describes the cohort; it is not the exported model's own weights."),
        Table(["variable", terms["effect"], "95% CI", "p"], rows)])


def tree_importance(summary: dict[str, Any]) -> Section | None:
    """Trees have no coefficients: held-out permutation importance of the clinical variables instead."""
    found = summary.get("tree_importance")
    if not found:
        return None
    if found.get("error"):
        return ("Clinical variables: permutation importance", [P(f"Not computed: {found['error']}.", note=True)])
    rows = [[r["term"], f"{r['drop']:+.3f}", f"{r['sd']:.3f}"] for r in found["rows"]]
    return ("Clinical variables: permutation importance (tree model)", [
        P(f"The exported model rests partly on {found['family']} trees, which have no coefficients. {found['method']}. "
          f"A larger drop means the trees lean more on that variable; about 0 means unused, below 0 is noise. It ranks "
          "variables; it does not say in which direction they act (the table above does, for a Cox model)."),
        Table(["variable", f"drop in held-out {found['metric']}", "SD"], rows)])


def clinical_missing(summary: dict[str, Any]) -> Section | None:
    """What training treated as missing, per clinical feature (train/clinical_missing.py); only when any was."""
    from train.clinical_missing import KINDS, WORDS

    rows = [r for r in summary.get("clinical_missing") or [] if any(r.get(k) for k in KINDS)]
    if not rows:
        return None
    table = Table(["feature", "usable / patients"] + [WORDS[k] for k in KINDS] + ["schema range", "treated as"],
                  [[r["feature"], f"{r['usable']}/{r['n']}"] + [str(r.get(k, 0)) for k in KINDS]
                   + ["—" if not r.get("range") else f"{r['range'][0]:g}–{r['range'][1]:g}"
                      + (f" {r['unit']}" if r.get("unit") else ""), r["treated"]] for r in rows])
    return ("Clinical values treated as missing", [
        P("Values training could not use, per feature, and how the fold-fitted encoder filled them in. A value "
          "outside the schema's range counts as missing: many out-of-range values usually mean the range (or the "
          "unit) in the schema is wrong, not the data."), table])


def _calibration_table(rows: list[dict[str, Any]]) -> Table:
    return Table(["horizon (months)", "risk group", "n", "predicted event-free", "observed (KM)", "95% CI"],
                 [[f"{r['horizon']:g}", r["group"], str(r["n"]), f"{r['predicted']:.3f}", f"{r['observed']:.3f}",
                   f"{r['ci95'][0]:.3f}–{r['ci95'][1]:.3f}"] for r in rows])


CAPTIONS = {
    "km_by_risk_group": ("Kaplan–Meier curves of the patients grouped by tertile of their out-of-fold predicted risk "
                         "(each patient scored by a CV model that never saw it; percentile within its fold, averaged "
                         "over repeats). Shaded: 95% CI; ticks: censored patients; table: numbers at risk."),
    "calibration_horizons": ("Predicted against observed event-free probability at distinct event-time horizons, "
                             "per risk tertile. Predicted: a one-covariate Cox model (Breslow baseline) on the "
                             "out-of-fold risk, cross-fitted. Observed: Kaplan–Meier with 95% CI. The numbers are in "
                             "the table below the figure."),
    "roc": "ROC of the out-of-fold P(BRS3) (cross-fitted Platt scaling of the repeat-averaged CV logits); the dot is "
           "threshold 0.5.",
    "reliability": "Observed BRS3 fraction against predicted probability in quantile bins (Wilson 95% CI).",
    "f1_threshold": "F1 against the decision threshold; the evaluator thresholds the submitted probability at 0.5.",
}


def figures(summary: dict[str, Any]) -> Section | None:
    files = summary.get("figures") or {}
    numbers = summary.get("figure_numbers") or {}
    blocks: list[Any] = []
    if "logrank_p" in numbers:
        blocks.append(P(f"Log-rank test across the three risk groups: p = {numbers['logrank_p']:.3g}."))
    for key in ("km_by_risk_group", "calibration_horizons", "roc", "reliability", "f1_threshold"):
        if key in files:
            blocks.append(Figure(files[key], CAPTIONS[key]))
        if key == "calibration_horizons" and numbers.get("calibration"):
            blocks.append(_calibration_table(numbers["calibration"]))
        if key == "roc" and numbers.get("roc_auc"):
            auc = numbers["roc_auc"]
            blocks.append(P(f"The curve's AUC is {auc['value']:.3f} (95% CI {auc['ci95'][0]:.3f}–{auc['ci95'][1]:.3f}): "
                            "the repeat-averaged out-of-fold probabilities scored once. The cross-validation table's "
                            "pooled AUC scores each repeat separately and averages, and its fold mean averages folds, "
                            "so the three differ slightly.", note=True))
    if "training_curves" in files:
        chosen = ("the epoch count inner cross-validation chose" if (summary.get("ensemble") or {}).get("stopping")
                  == "inner_cv" else "the epoch early stopping chose on the inner split")
        blocks.append(Figure(files["training_curves"], "Training loss and the inner-validation metric per epoch for "
                             f"every CV fold of the exported network; triangles mark {chosen}."))
    return ("Figures", blocks) if blocks else None


def heatmaps(summary: dict[str, Any]) -> Section | None:
    maps = summary.get("heatmaps") or []
    if not maps:
        if summary.get("heatmaps_note"):
            return ("Slide heatmaps", [P(f"No slide heatmaps: {summary['heatmaps_note']}.", note=True)])
        if summary.get("heatmaps_error"):
            return ("Slide heatmaps", [P(f"Slide heatmaps could not be drawn: {summary['heatmaps_error']}", note=True)])
        return None
    from chimera_surv.explain import NOTES

    kinds = sorted({h.get("kind", "attention") for h in maps})
    blocks: list[Any] = [P("Each patient drawn by the ensemble member that did not train on it. "
                           + " ".join(NOTES[k] for k in kinds), note=True)]
    for h in maps:
        text = f"{h['case_id']}: out-of-fold risk percentile {h['risk_pct']:.0f} ({h['member']}). {h.get('summary', '')}"
        blocks.append(Figure(h["file"], text) if h.get("file") else P(text + ".", note=True))
    title = " and ".join("attention" if k == "attention" else "how much each patch raises the risk" for k in kinds)
    return (f"Slide heatmaps: {title} (out-of-fold patients)", blocks)


def intershap(summary: dict[str, Any]) -> Section | None:
    audit = summary.get("intershap_audit")
    if not audit:
        return None
    mods = audit["modalities"]
    first_masker = next(iter(audit["maskers"]))
    est = audit["maskers"][first_masker].get("orig_mean_abs") or next(iter(audit["maskers"][first_masker].values()))
    lead = (f"The figure to read: of the prediction's attribution, {est['interaction_pct']['mean']:.1f}% (± "
            f"{est['interaction_pct']['sd']:.1f} over members) rests only on the data types together (their "
            "interaction); the rest is carried by each data type on its own: "
            + ", ".join(f"{m} {est['shares_pct'][m]['mean']:.0f}%" for m in mods if m in est["shares_pct"])
            + f" (InterSHAP, original estimator, absent data type = {first_masker}). A small interaction share "
            "means the model mostly adds up the data types; it does not say whether images help accuracy (the "
            "cohort-held-out comparison does).")
    rows = []
    for masker, ests in audit["maskers"].items():
        for name, e in ests.items():
            rows.append([masker, name, f"{e['interaction_pct']['mean']:.2f} ± {e['interaction_pct']['sd']:.2f}"]
                        + [f"{e['shares_pct'][m]['mean']:.1f} ± {e['shares_pct'][m]['sd']:.1f}"
                           if m in e["shares_pct"] else "–" for m in mods])
    blocks: list[Any] = [P(lead)]
    if (summary.get("figures") or {}).get("intershap"):
        blocks.append(Figure(summary["figures"]["intershap"], "Each data type alone against their interaction, "
                             "mean ± SD over the ensemble members."))
    blocks.append(Details(f"Every estimator ({len(rows)} rows; each member explained on its held-out fold against "
                          f"its training fold, {len(audit['members'])} members; see docs/audit.md)",
                          [Table(["masker", "estimator", "interaction %"] + [f"{m} %" for m in mods], rows)]))
    return ("InterSHAP audit: what the prediction rests on", blocks)


def anchors(summary: dict[str, Any]) -> Section | None:
    doc = summary.get("anchors")
    if not doc or not doc.get("summary"):
        return None
    blocks: list[Any] = [P("scikit-survival's own models, fitted on the same splits as the exported model with their "
                           "own simple preprocessing (`python -m train anchors`, train/anchors.py): CoxPH on the "
                           "clinical columns, CoxNet, a random survival forest, gradient-boosted survival, and their "
                           "plain average. Mean Harrell C-index over the splits.")]
    for kind, s in doc["summary"].items():
        rows = [[name, f"{value:.3f}"] for name, value in s["mean"].items()]
        blocks.append(Table([f"model ({kind}, {s['n_splits']} splits)", "Harrell C-index"], rows))
        spread = f", paired SD {s['paired_sd']:.3f}" if s.get("paired_sd") is not None else ""
        blocks.append(P(f"Auto − the best anchor ({s['best_anchor']}): {s['auto_minus_best_anchor']:+.3f}; auto is "
                        f"ahead of it on {s['auto_ahead_on']} of {s['n_splits']} splits{spread}.", note=True))
    return ("Against scikit-survival on the same splits", blocks)


SECTIONS = (about, model_chosen, auto_choice, cross_validation, anchors, evaluation, cohort_held_out,
            exported_ensemble, model_terms, tree_importance, clinical_missing, figures, heatmaps, intershap)


def build(summary: dict[str, Any]) -> list[Section]:
    """Every section that has something to say, in reading order."""
    return [s for s in (f(summary) for f in SECTIONS) if s is not None]
