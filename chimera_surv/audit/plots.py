"""Figures for the audit report: modality contributions, the interaction matrix, per-patient spread.

Why a figure: one global percentage hides whether interaction is a few patients or everyone, and which
modality carries the prediction. Every panel names its estimator. Matplotlib's Agg backend (no display).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from chimera_surv.audit.estimators import PRIMARY_ESTIMATOR


def plot_audit(summary: dict[str, Any], path: Path, title: str = "InterSHAP audit") -> Path:
    """Three panels from ``InterSHAPResult.summary(per_patient=True)`` (plus ``local_pct``, optional)."""
    mods = summary["modalities"]
    est = summary["estimators"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    # 1. shares under two estimators
    names = [PRIMARY_ESTIMATOR, "e5_patient_mean"]
    labels = mods + ["interaction"]
    width = 0.38
    for k, name in enumerate(names):
        vals = [est[name]["shares_pct"][lab] for lab in labels]
        axes[0].bar(np.arange(len(labels)) + (k - 0.5) * width, vals, width, label=name)
    axes[0].set_xticks(np.arange(len(labels)), labels)
    axes[0].set_ylabel("share of |attribution| (%)")
    axes[0].set_title("modality contributions")
    axes[0].legend(fontsize=8)
    # 2. mean |Phi| matrix
    mat = np.array(summary["mean_abs_matrix"]) if summary.get("mean_abs_matrix") is not None else \
        np.zeros((len(mods), len(mods)))
    im = axes[1].imshow(mat, cmap="viridis")
    axes[1].set_xticks(range(len(mods)), mods)
    axes[1].set_yticks(range(len(mods)), mods)
    for i in range(len(mods)):
        for j in range(len(mods)):
            axes[1].text(j, i, f"{mat[i, j]:.3g}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    axes[1].set_title("mean |Φ_ij| (diag: main, off: interaction)")
    # 3. per-patient distribution of local interaction
    local = {k: est[k].get("per_patient_pct") for k in ("orig_local_mean", "e5_patient_mean")}
    local = {k: v for k, v in local.items() if v}
    if local:
        axes[2].hist(list(local.values()), bins=30, range=(0, 100), label=list(local.keys()))
        axes[2].legend(fontsize=8)
    axes[2].set_xlabel("per-patient interaction (%)")
    axes[2].set_ylabel("patients")
    axes[2].set_title("per-patient distribution")
    harsanyi = summary.get("harsanyi") or {}
    higher = (f", {harsanyi['order']}-way dividend {harsanyi['all_m']['pct']:.1f}% (Harsanyi)"
              if harsanyi.get("order", 0) >= 3 else "")
    fig.suptitle(f"{title} — masker {summary['masker'].get('name')}, output {summary['output']}, "
                 f"n={summary['n_patients']}{higher}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_synthetic(report: dict[str, Any], path: Path) -> Path:
    """Regime x estimator bars (model and oracle) and per-patient local InterSHAP per regime."""
    agg = report["aggregate"]
    regimes = list(agg)
    bars = [("model_mean", "orig_mean_abs"), ("model_shuffle", "orig_mean_abs"), ("model_mean", "e5_patient_mean"),
            ("oracle_mean", "orig_mean_abs")]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    width = 0.8 / len(bars)
    for k, (audit, est) in enumerate(bars):
        means = [agg[r][f"{audit}.{est}"]["mean"] for r in regimes]
        sds = [agg[r][f"{audit}.{est}"]["sd"] for r in regimes]
        axes[0].bar(np.arange(len(regimes)) + (k - (len(bars) - 1) / 2) * width, means, width, yerr=sds,
                    label=f"{audit.replace('_', ' ')} / {est}")
    axes[0].axhline(100, color="k", lw=0.5, ls=":")
    axes[0].axhline(100 / 3, color="grey", lw=0.5, ls=":")
    axes[0].set_xticks(range(len(regimes)), regimes)
    axes[0].set_ylabel("InterSHAP (%)")
    axes[0].set_title("synthetic survival regimes")
    axes[0].legend(fontsize=7)
    per = [np.concatenate([np.array(r["model_mean"]["per_patient_local_orig_pct"]) for r in report["runs"]
                           if r["regime"] == reg]) for reg in regimes]
    axes[1].boxplot(per, showfliers=False)
    axes[1].set_xticks(range(1, len(regimes) + 1), regimes)
    axes[1].set_ylabel("per-patient local InterSHAP, ORIG (%)")
    axes[1].set_title("per-patient distribution (model, mean masker)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
