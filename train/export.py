"""Write the trained ensemble as a bundle (bundle.json + weights.safetensors) that inference.py loads.

The calibration is fitted on out-of-fold risks (each patient scored by the member that did not train on it), so the
risk → months (or logit → probability) map sees the spread a new patient's risk will have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import chimera_surv
from chimera_surv.bundle import MemberSpec, save_bundle
from chimera_surv.survival.calibration import CALIBRATIONS
from train.protocol import RunContext, member_state, oof_standardised


def fit_calibration(ctx: RunContext, oof: np.ndarray) -> dict[str, Any]:
    """km_quantile on (OOF risk, time, event) for survival tasks; Platt on (OOF logit, label) for Task 2."""
    data = ctx.data
    if ctx.survival:
        cfg = ctx.config.get("calibration") or {"name": "km_quantile"}
        calibration = CALIBRATIONS.build(cfg).fit(oof, data.time, data.event)
    else:
        cfg = ctx.config.get("calibration") or {"name": "platt"}
        calibration = CALIBRATIONS.build(cfg).fit(oof, None, data.label)
    return calibration.to_dict()


def export(ctx: RunContext, members: list[dict[str, Any]], out_dir: Path, recipe: dict[str, Any] | None,
           genes: list[str], cv_summary: dict[str, Any] | None = None) -> Path:
    """Assemble MemberSpecs from the work folder and save the bundle deterministically."""
    oof = oof_standardised(ctx, members)
    if not np.isfinite(oof).all():
        raise RuntimeError("some patients have no out-of-fold risk; re-run the fit step")
    specs = [MemberSpec(name=r["name"], network_config=r["network"], input_dims=r["input_dims"],
                        state_dict=member_state(ctx, r), preprocessing=r["preprocessing"],
                        risk_shift=r["risk_shift"], risk_scale=r["risk_scale"], kind=r.get("kind", "network"))
             for r in members]
    modalities = members[0]["modalities"]
    config = ctx.config
    meta = {
        "config_hash": ctx.config_hash,
        "seed": int(config["seed"]),
        "code_version": chimera_surv.__version__,
        "n_patients": len(ctx.data),
        "cohorts": {c: ctx.data.cohorts.count(c) for c in sorted(set(ctx.data.cohorts))},
        "members": [{"name": r["name"], "split": r["split"], "best_epoch": r["best_epoch"]} for r in members],
        # what `model: auto` chose and the inner scores it chose on (classical members only)
        **({"auto": members[0]["auto"]} if members[0].get("auto") else {}),
        "train": config["train"],
        "cv_summary": cv_summary or {},
    }
    from chimera_surv.generic import task_from_config, task_meta

    task = task_from_config(config)
    meta["task"] = task_meta(task)  # predict_cohort reads the kind and the output file from here
    return save_bundle(out_dir, task_id=task.id, modalities=modalities, members=specs,
                       calibration=fit_calibration(ctx, oof), output_kind=task.output_kind,
                       recipe=_inference_recipe(recipe) if "wsi" in modalities else None,
                       mri_kind=config.get("mri_kind") if "mri" in modalities else None,
                       genes=genes if "rna" in modalities else [], clinical_schema=ctx.schema.to_dict(), meta=meta)


def _inference_recipe(recipe: dict[str, Any] | None) -> dict[str, Any] | None:
    """The recipe the container extracts with: training-only stain jitter removed (stain.py)."""
    if recipe is None:
        return None
    return {k: v for k, v in recipe.items() if k not in ("stain_jitter", "quality_jitter")}
