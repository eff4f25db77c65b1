"""What a predicted number means, in words and units, for every place a person reads one: the `RESULT` log line,
the explain page, `predict_cohort`'s table headers.

Why one place: "110.472" says nothing; "110.5 months to recurrence (higher = later, lower risk)" does, and the
three readers must say the same thing. The per-patient survival probability comes from the bundle's survival curve
(chimera_surv.survival.calibration.SurvivalCurve, stored at export); older bundles have none and say so.
"""

from __future__ import annotations

import math
from typing import Any

EVENTS = {1: "biochemical recurrence", 3: "bladder cancer recurrence"}  # CHIMERA's survival tasks


def value_meaning(task_id: int, output_kind: str) -> dict[str, str]:
    """{unit, meaning} of a task's output value (CHIMERA task id or 0 for a generic task; months or probability)."""
    if output_kind == "probability":
        what = "BRS3 (the high-risk molecular subtype)" if task_id == 2 else "the positive class"
        return {"unit": "probability (0-1)", "meaning": f"predicted probability of {what}"}
    event = EVENTS.get(task_id, "the event")
    return {"unit": "months", "meaning": f"predicted months to {event} (a time on the training cohort's Kaplan-Meier "
                                          "curve at the patient's risk quantile; higher = later, lower risk)"}


def survival_curve(bundle: Any) -> Any:
    """The bundle's SurvivalCurve, or None (a binary bundle, or one exported before curves were stored)."""
    doc = (getattr(bundle, "meta", None) or {}).get("survival_curve")
    if not doc:
        return None
    from chimera_surv.survival.calibration import SurvivalCurve

    return SurvivalCurve.from_dict(doc)


def horizons(bundle: Any) -> list[float]:
    return [float(h) for h in (getattr(bundle, "meta", None) or {}).get("horizons_months") or []]


def model_words(bundle: Any) -> str:
    """Which model produced the number: the automatic choice's winner, or the members' kind, and their count."""
    meta = getattr(bundle, "meta", None) or {}
    members = getattr(bundle, "members", []) or []
    chosen = (meta.get("auto") or {}).get("chosen")
    kinds = sorted({"network" if hasattr(m, "network") else "classical" for m in members}) or ["unknown"]
    families = sorted({p.family for m in members for p in getattr(getattr(m, "model", None), "parts", [])})
    name = " + ".join(kinds) + (f" ({', '.join(families)})" if families else "")
    if chosen and chosen != "model":
        name = f"{chosen}: {name}"
    return f"{name} ensemble of {len(members)} member(s)"


def describe(bundle: Any, value: float, risk: float | None, used: list[str]) -> dict[str, Any]:
    """The number with its unit and meaning, S(t) at the bundle's horizons where it has a survival curve,
    the median time where the curve reaches 0.5, and the model and modalities that produced it."""
    out: dict[str, Any] = {**value_meaning(bundle.task_id, bundle.output_kind), "value": value, "model": model_words(bundle),
                           "modalities": "+".join(used) if used else "-"}
    curve = survival_curve(bundle) if risk is not None and math.isfinite(risk) else None
    if curve is not None:
        times = horizons(bundle)
        out["survival"] = {f"S({h:g} months)": round(s, 4) for h, s in zip(times, curve.survival(risk, times),
                                                                           strict=True)}
        median = curve.median(risk)
        out["median_months"] = None if median is None else round(median, 2)
        out["max_follow_up_months"] = curve.max_follow_up
        if bundle.output_kind == "months" and curve.max_follow_up is not None and math.isfinite(value):
            # the KM-quantile time can lie past the data; then it is an extrapolation, said next to the number
            out["past_follow_up"] = bool(value > curve.max_follow_up)
    elif bundle.output_kind == "months":
        out["survival"] = "not stored in this bundle (exported before survival curves were kept)"
    return out
