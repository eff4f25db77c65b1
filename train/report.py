"""Step `report`: JSON + markdown + PNGs from the CV, cohort-held-out and ensemble records.

What it shows, and why: per-fold and pooled C-index (or AUC) with bootstrap CIs for every architecture on the SAME
folds (clinical-only beside multimodal, since clinical-only models often won on the hidden test), the
cohort-held-out rows beside CV (cohort shift shows here before the platform shows it), KM curves by predicted risk
group, predicted months against KM, the training curves that chose each early-stopping epoch, and (after the
`audit` step) the InterSHAP section: how much of each member's prediction is cross-modal interaction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from chimera_surv.survival.metrics import bootstrap_ci, harrell_c
from train.protocol import RunContext, oof_standardised


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
    """Per architecture: fold metrics, mean ± sd, pooled out-of-fold metric per repeat with a bootstrap CI."""
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
        out["architectures"][arch] = {
            "modalities": rows[0]["modalities"],
            "folds": [{"split": r["split"], "value": r["metric"], "best_epoch": r["best_epoch"],
                       "inner_val": r["inner_val_metric"]} for r in rows],
            "fold_mean": float(np.nanmean(folds)), "fold_sd": float(np.nanstd(folds)),
            "pooled": pooled, "pooled_mean": float(np.mean([p["value"] for p in pooled])),
        }
    for r in holdout:
        point, low, high = _ci(ctx, r["test"], np.asarray(r["risk"]), n_boot)
        out["holdout"].append({"arch": r["arch"], "split": r["split"], "n_test": len(r["test"]), "value": point,
                               "ci95": [low, high], "modalities": r["modalities"]})
    return out


def _markdown(summary: dict[str, Any], ensemble: dict[str, Any]) -> str:
    metric = summary["metric"]
    lines = ["# Training report", "",
             (f"Metric: **{metric}**. Early stopping and model selection used an inner split of each training fold "
              "only; preprocessing was fitted on the training fold only. Differences below ~0.05 are noise at this "
              "cohort size."), "", "## Cross-validation (same folds for every architecture)", "",
             f"| architecture | modalities | fold mean ± sd | pooled {metric} (95% CI, repeat 0) |", "|---|---|---|---|"]
    for name, row in summary["architectures"].items():
        p = row["pooled"][0]
        lines.append(f"| {name} | {'+'.join(row['modalities'])} | {row['fold_mean']:.3f} ± {row['fold_sd']:.3f} | "
                     f"{p['value']:.3f} ({p['ci95'][0]:.3f}–{p['ci95'][1]:.3f}) |")
    lines += ["", "## Cohort-held-out (train on one cohort, test on the other)", ""]
    if summary["holdout"]:
        lines += [f"| architecture | split | n test | {metric} (95% CI) |", "|---|---|---|---|"]
        for r in summary["holdout"]:
            lines.append(f"| {r['arch']} | {r['split']} | {r['n_test']} | {r['value']:.3f} "
                         f"({r['ci95'][0]:.3f}–{r['ci95'][1]:.3f}) |")
    else:
        lines.append("Only one cohort in the data: no cohort-held-out rows.")
    lines += ["", "## Exported ensemble", "",
              (f"Out-of-fold {metric} of the ensemble members (each patient scored by the member that did not "
               f"train on it; that fold also stopped the member, so this is optimistic and not a validation score): "
               f"{ensemble['oof_metric']:.3f}."), "",
              "Figures: `km_by_risk_group.png`, `predicted_vs_km.png`, `training_curves.png`.", ""]
    return "\n".join(lines)


def _plots(ctx: RunContext, cv: list[dict[str, Any]], members: list[dict[str, Any]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from chimera_surv.survival.calibration import kaplan_meier
    from train.export import fit_calibration

    written = []
    rows = [r for r in cv if r["arch"] == "model" and r["repeat"] == 0]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for r in [r for r in cv if r["arch"] == "model"]:
        epochs = [h["epoch"] for h in r["history"]]
        ax[0].plot(epochs, [h["train_loss"] for h in r["history"]], alpha=0.6)
        ax[1].plot(epochs, [h["val_metric"] for h in r["history"]], alpha=0.6)
        ax[1].axvline(r["best_epoch"], color="grey", lw=0.5)
    ax[0].set(title="training loss (CV folds)", xlabel="epoch")
    ax[1].set(title="inner-validation metric", xlabel="epoch")
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=80)
    plt.close(fig)
    written.append("training_curves.png")
    if not ctx.survival or not rows:
        return written
    data = ctx.data
    idx = np.array([i for r in rows for i in r["test"]])
    risk = np.array([v for r in rows for v in r["risk"]])
    groups = np.digitize(risk, np.quantile(risk, [1 / 3, 2 / 3]))
    fig, ax = plt.subplots(figsize=(5, 4))
    for g, name in enumerate(["low", "mid", "high"]):
        sel = idx[groups == g]
        if len(sel):
            t, s = kaplan_meier(data.time[sel], data.event[sel])
            ax.step(np.r_[0, t], np.r_[1, s], where="post", label=f"{name} risk (n={len(sel)})")
    ax.set(title="KM by out-of-fold predicted risk tertile", xlabel="months", ylabel="event-free")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "km_by_risk_group.png", dpi=80)
    plt.close(fig)
    written.append("km_by_risk_group.png")
    if members:
        from chimera_surv.survival.calibration import calibration_from_dict

        oof = oof_standardised(ctx, members)
        months = calibration_from_dict(fit_calibration(ctx, oof)).predict(oof)
        groups = np.digitize(oof, np.quantile(oof, [1 / 3, 2 / 3]))
        fig, ax = plt.subplots(figsize=(5, 4))
        for g, name in enumerate(["low", "mid", "high"]):
            sel = np.where(groups == g)[0]
            t, s = kaplan_meier(data.time[sel], data.event[sel])
            line = ax.step(np.r_[0, t], np.r_[1, s], where="post", label=f"{name} risk KM")[0]
            ax.axvline(float(np.median(months[sel])), color=line.get_color(), ls="--", lw=1,
                       label=f"{name}: median predicted {np.median(months[sel]):.0f} mo")
        ax.set(title="predicted months vs KM (ensemble, out-of-fold)", xlabel="months", ylabel="event-free")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "predicted_vs_km.png", dpi=80)
        plt.close(fig)
        written.append("predicted_vs_km.png")
    return written


def write_report(ctx: RunContext, cv: list[dict[str, Any]], holdout: list[dict[str, Any]],
                 members: list[dict[str, Any]], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    summary = cv_summary(ctx, cv, holdout)
    oof = oof_standardised(ctx, members)
    idx = list(range(len(ctx.data)))
    first = ctx.data.event if ctx.survival else ctx.data.label
    ensemble = {"oof_metric": float(_metric_fn(ctx)(first[idx], ctx.data.time[idx], oof)),
                "members": [{"name": m["name"], "best_epoch": m["best_epoch"]} for m in members]}
    summary["ensemble"] = ensemble
    if members and members[0].get("auto"):  # model: auto — what it chose and on which inner scores
        from train.auto import auto_report

        summary["auto"] = auto_report(members, cv)
    summary["figures"] = _plots(ctx, cv, members, out)
    audit = out / "audit" / "summary.json"  # an earlier `audit` step of the same config: keep its section
    if audit.is_file() and json.loads(audit.read_text()).get("config_hash") == ctx.config_hash:
        summary["intershap_audit"] = json.loads(audit.read_text())
    _write(out, summary)
    return out / "report.md"


def _write(out: Path, summary: dict[str, Any]) -> None:
    """report.md is rendered from report.json alone, so a later step can add a section and re-render."""
    from train.audit import markdown as audit_markdown

    text = _markdown(summary, summary["ensemble"])
    if summary.get("auto"):
        from train.auto import auto_markdown

        text += "\n" + auto_markdown(summary["auto"])
    if summary.get("intershap_audit"):
        text += "\n" + audit_markdown(summary["intershap_audit"])
    (out / "report.json").write_text(json.dumps(summary, indent=1, default=float))
    (out / "report.md").write_text(text)


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
