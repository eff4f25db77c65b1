"""Write the trained ensemble as a bundle (bundle.json + weights.safetensors) that inference.py loads.

The calibration is fitted on out-of-fold risks (each patient scored by the member that did not train on it), so the
risk → months (or logit → probability) map sees the spread a new patient's risk will have.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

import chimera_surv
from chimera_surv.bundle_save import MemberSpec, save_bundle
from chimera_surv.survival.calibration import CALIBRATIONS
from train.protocol import RunContext, member_state, oof_standardised, spread_ratio
from train.survival_curve import constant_risk, far_out_note, fit_survival_curve, survival_curve_clip


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
    # the calibration is fitted on one member's OOF spread; the shipped average is divided by this ratio to match
    ratio = spread_ratio(members)
    if not np.isfinite(oof).all():
        raise RuntimeError("some patients have no out-of-fold risk; re-run the fit step")
    specs = [MemberSpec(name=r["name"], network_config=r["network"], input_dims=r["input_dims"],
                        state_dict=member_state(ctx, r), preprocessing=r["preprocessing"],
                        risk_shift=r["risk_shift"], risk_scale=r["risk_scale"] * ratio, kind=r.get("kind", "network"))
             for r in members]
    # members may have chosen different options (auto selects inside each member's training part)
    modalities = [m for m in ctx.data.modalities if any(m in r["modalities"] for r in members)]
    config = ctx.config
    meta = {
        "config_hash": ctx.config_hash,
        "seed": int(config["seed"]),
        "code_version": chimera_surv.__version__,
        "n_patients": len(ctx.data),
        "cohorts": {c: ctx.data.cohorts.count(c) for c in sorted(set(ctx.data.cohorts))},
        "members": [{"name": r["name"], "split": r["split"], "best_epoch": r["best_epoch"]} for r in members],
        # what `model: auto` chose and the inner scores it chose on (classical members only); a score undefined on a
        # small fold (one class, no comparable pair) is null, not NaN: the bundle JSON holds finite numbers only
        **({"auto": undefined_as_null(members[0]["auto"])} if members[0].get("auto") else {}),
        "train": config["train"],
        "cv_summary": undefined_as_null(cv_summary or {}),
        "shipped_risk_spread_ratio": ratio,
        "oof_provenance": oof_provenance(members),
        **({"auto_member_choices": [r["auto"]["chosen"] for r in members]} if members[0].get("auto") else {}),
        **survival_meta(ctx, oof),  # per-patient S(t) at horizons and the longest follow-up (predict_cohort)
    }
    from chimera_surv.generic import task_from_config, task_meta

    task = task_from_config(config)
    meta["task"] = task_meta(task)  # predict_cohort reads the kind and the output file from here
    return save_bundle(out_dir, task_id=task.id, modalities=modalities, members=specs,
                       calibration=fit_calibration(ctx, oof), output_kind=task.output_kind,
                       recipe=_inference_recipe(recipe) if "wsi" in modalities else None,
                       mri_kind=config.get("mri_kind") if "mri" in modalities else None,
                       genes=genes if "rna" in modalities else [], clinical_schema=ctx.schema.to_dict(), meta=meta)


def undefined_as_null(value: Any) -> Any:
    """A report structure with every NaN or infinite number (an AUC on a one-class fold, an SE of one difference)
    replaced by None."""
    if isinstance(value, dict):
        return {k: undefined_as_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [undefined_as_null(v) for v in value]
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return None
    return value


def oof_provenance(members: list[dict[str, Any]]) -> str:
    """Where the out-of-fold risks behind the calibration and the OOF figure come from (a report caveat)."""
    if all(r.get("kind") == "classical" for r in members):
        return ("classical: each member chose its option on its own training part's inner splits and was refitted "
                "there; its held-out fold was seen by neither the choice nor the fit")
    stopping = sorted({str(r.get("stopping")) for r in members})
    if "holdout" in stopping:
        return ("network: each member early-stopped on its own held-out fold, so its out-of-fold risks (and the "
                "calibration fitted on them) are optimistic")
    return f"network: stopping {', '.join(stopping)} inside each member's training part; held-out fold unseen"


def survival_meta(ctx: RunContext, oof: np.ndarray) -> dict[str, Any]:
    """Survival tasks: a one-covariate Cox model with a Breslow baseline on the (winsorised) out-of-fold ensemble
    risk (train/survival_curve.py), stored as arrays (chimera_surv.survival.calibration.SurvivalCurve), the report's horizons and
    the longest training follow-up, so each patient's S(t) and median can be given and times past the data flagged."""
    if not ctx.survival:
        return {}
    from train.report.numbers import distinct_horizons

    data = ctx.data
    curve = fit_survival_curve(oof, data.time, data.event, survival_curve_clip(ctx.config))
    note = far_out_note(oof, data.time, data.event, curve)
    if constant_risk(oof):
        note = ("export: the out-of-fold risk is the same for every patient (no model ranked anyone: too few events "
                "per training part?), so every patient gets the cohort's own survival curve and the same months")
    if note:  # on the console and in train.log, like the clinical lines
        logging.getLogger("train").warning(note)
        print(note)
    horizons = distinct_horizons((ctx.config.get("report") or {}).get("horizons"), data.time, data.event)
    return {"survival_curve": curve.to_dict(), "horizons_months": horizons,
            "max_follow_up_months": float(np.max(data.time))}


def _inference_recipe(recipe: dict[str, Any] | None) -> dict[str, Any] | None:
    """The recipe the container extracts with: training-only stain jitter removed (stain.py)."""
    if recipe is None:
        return None
    return {k: v for k, v in recipe.items() if k not in ("stain_jitter", "quality_jitter")}
