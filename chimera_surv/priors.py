"""Knowledge-based clinical priors: the fallback when no bundle is present or it fails (design.md).

Each prior turns a parsed ClinicalRecord into a finite output for any input, an empty record included:
months (Tasks 1, 3: a restricted mean event-free time, strictly decreasing in risk, so larger = later = safer)
or P(BRS3) (Task 2). Every number lives in resources/priors/*.json with its source; priors.md says which parts
are published and which are heuristic.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chimera_surv.readers.clinical import ClinicalRecord, match_key
from chimera_surv.registry import Registry

PRIOR_DIR = Path(__file__).resolve().parents[1] / "resources" / "priors"


@dataclass
class PriorOutput:
    """value: months or probability; score: the points score; detail: how it was reached (for the log)."""

    value: float
    score: float
    detail: dict[str, Any] = field(default_factory=dict)


class Prior:
    """Base: loads its JSON table and maps a risk to the task's output scale."""

    name = "prior"

    def __init__(self, table: str | Path | Mapping[str, Any] | None = None) -> None:
        if table is None:
            table = PRIOR_DIR / f"{self.name}.json"
        if not isinstance(table, Mapping):
            table = json.loads(Path(table).read_text(encoding="utf-8"))
        self.table: dict[str, Any] = dict(table)
        self.output: dict[str, Any] = dict(self.table["output"])
        self.task = int(self.table.get("task", 0))

    @property
    def output_kind(self) -> str:
        return self.output["kind"]

    def predict(self, record: ClinicalRecord | Mapping[str, Any] | None) -> PriorOutput:
        raise NotImplementedError

    def _finish(self, score: float, tie: float, reference: float, detail: dict[str, Any]) -> PriorOutput:
        """Score + tie-breaker → months (proportional hazards on a baseline curve) or a probability."""
        risk = score + tie - reference
        if self.output_kind == "probability":
            base = float(self.output["base_probability"])
            shift = float(
                np.clip(
                    float(self.output["logit_per_point"]) * risk,
                    -float(self.output["max_shift"]),
                    float(self.output["max_shift"]),
                )
            )
            value = 1.0 / (1.0 + math.exp(-(math.log(base / (1.0 - base)) + shift)))
        else:
            hazard_ratio = float(self.output["hazard_ratio_per_point"]) ** risk
            value = restricted_mean_time(self.output["baseline"], hazard_ratio, float(self.output["horizon"]))
        detail.update(tie_breaker=tie, reference_score=reference)
        return PriorOutput(value=float(value), score=float(score), detail=detail)


def restricted_mean_time(baseline: Mapping[str, Any], hazard_ratio: float, horizon: float) -> float:
    """∫₀^horizon S0(t)^HR dt: strictly decreasing in HR where 0 < S0 < 1, bounded by the horizon."""
    if baseline["kind"] == "exponential":
        rate = -math.log(float(baseline["anchor_survival"])) / float(baseline["anchor_time"]) * hazard_ratio
        return horizon if rate <= 0 else (1.0 - math.exp(-rate * horizon)) / rate
    grid = np.linspace(0.0, horizon, int(horizon * 4) + 1)
    survival = np.interp(grid, np.asarray(baseline["times"], float), np.asarray(baseline["survival"], float))
    curve = np.power(np.clip(survival, 1e-12, 1.0), hazard_ratio)
    return float(np.sum((curve[1:] + curve[:-1]) * 0.5 * np.diff(grid)))


def _values(record: Any) -> Mapping[str, Any]:
    """The values mapping of a ClinicalRecord (or a plain mapping); anything else counts as empty."""
    values = record.values if isinstance(record, ClinicalRecord) else record
    return values if isinstance(values, Mapping) else {}


def _number(values: Mapping[str, Any], key: str) -> float | None:
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _text(values: Mapping[str, Any], key: str) -> str | None:
    value = values.get(key)
    return match_key(value) if isinstance(value, str) else None


def tie_breaker(values: Mapping[str, Any], spec: Mapping[str, Any]) -> float:
    """A bounded continuous term (|t| ≤ bound < 0.5 points) that only orders patients with equal scores."""
    raw = 0.0
    for term in spec.get("terms", []):
        x = _number(values, term["key"])
        if x is None:
            continue
        if term.get("transform") == "log":
            x, center = math.log(max(x, 0.1)), math.log(float(term["center"]))
        else:
            center = float(term["center"])
        contribution = float(term["weight"]) * (x - center) / float(term["scale"])
        raw += min(max(contribution, -50.0), 50.0)  # junk magnitudes must not reach inf - inf = NaN
    return float(spec.get("bound", 0.45)) * math.tanh(raw)


PRIORS: Registry[Prior] = Registry("prior")


@PRIORS.register("capra_s")
class CapraS(Prior):
    """CAPRA-S (Cooperberg et al., Cancer 2011): PSA, Gleason, margins, ECE, SVI, LNI → 0–12 points."""

    name = "capra_s"

    def predict(self, record: ClinicalRecord | Mapping[str, Any] | None) -> PriorOutput:
        values = _values(record)
        missing = self.table["missing_points"]
        points: dict[str, float] = {}
        imputed: list[str] = []

        psa = _number(values, "pre_operative_PSA")
        if psa is None or psa < 0:
            points["psa"] = float(missing["psa"])
            imputed.append("psa")
        else:
            bands = self.table["psa_bands"]
            points["psa"] = float(
                bands["points"][int(np.searchsorted(bands["upper_bounds"], psa, side="left"))]
            )

        gleason = self._gleason_points(values)
        if gleason is None:
            points["gleason"] = float(missing["gleason"])
            imputed.append("gleason")
        else:
            points["gleason"] = gleason

        pt_stage = _number(values, "pT_stage")
        fallback = self.table["pT_fallback"]
        implied = {
            "capsular_penetration": None if pt_stage is None else float(pt_stage >= fallback["ece_min"]),
            "invasion_seminal_vesicles": None
            if pt_stage is None
            else float(fallback["svi_min"] <= pt_stage < fallback["svi_max_exclusive"]),
        }
        for key, weight in self.table["binary_points"].items():
            flag = _number(values, key)
            flag = implied.get(key) if flag is None else flag
            if flag is None:
                points[key] = float(missing[key])
                imputed.append(key)
            else:
                points[key] = float(weight) if flag > 0 else 0.0

        score = float(sum(points.values()))
        tie = tie_breaker(values, self.table["tie_breaker"])
        return self._finish(
            score, tie, float(self.output["reference_score"]), {"points": points, "imputed": imputed}
        )

    def _gleason_points(self, values: Mapping[str, Any]) -> float | None:
        primary, secondary = _number(values, "primary_gleason"), _number(values, "secondary_gleason")
        if primary is not None and secondary is not None:
            total = primary + secondary
            if total <= 6:
                return 0.0
            if total >= 8:
                return 3.0
            return 1.0 if primary < secondary else 2.0  # 3+4 vs 4+3 (7 = 2+5 / 5+2 follow the same rule)
        isup = _number(values, "ISUP")
        if isup is not None and float(isup).is_integer():
            points = self.table["gleason"]["isup_points"].get(str(int(isup)))
            return None if points is None else float(points)
        return None


class PointsPrior(Prior):
    """A table of categorical points; a missing item scores its assumed average, so an empty record sits on
    the reference (baseline curve or prevalence)."""

    def predict(self, record: ClinicalRecord | Mapping[str, Any] | None) -> PriorOutput:
        values = _values(record)
        points: dict[str, float] = {}
        imputed: list[str] = []
        for key, spec in self.table["features"].items():
            table = {match_key(k): float(v) for k, v in spec["points"].items()}
            category = _text(values, key)
            if category in table:
                points[key] = table[category]
            elif _not_applicable(values, spec.get("zero_if", {})):
                points[key] = 0.0  # e.g. no T1 substage for a Ta tumour: absent by design, not missing
            else:
                points[key] = float(spec["missing"])
                imputed.append(key)
        score = float(sum(points.values()))
        tie = tie_breaker(values, self.table.get("tie_breaker", {}))
        return self._finish(score, tie, self.reference_score(), {"points": points, "imputed": imputed})

    def reference_score(self) -> float:
        reference = self.output.get("reference_score", "expected")
        if reference == "expected":
            return float(sum(float(spec["missing"]) for spec in self.table["features"].values()))
        return float(reference)


def _not_applicable(values: Mapping[str, Any], conditions: Mapping[str, list[str]]) -> bool:
    return any(_text(values, key) in {match_key(v) for v in allowed} for key, allowed in conditions.items())


@PRIORS.register("nmibc_points")
class NMIBCPoints(PointsPrior):
    """Task 3: EORTC group, stage, substage, grade, LVI, variant, recurrence and BRS3 → months."""

    name = "nmibc_points"


@PRIORS.register("brs3_logit")
class BRS3Logit(PointsPrior):
    """Task 2: training prevalence of BRS3 moved by a bounded logit shift."""

    name = "brs3_logit"


TASK_PRIORS = {1: "capra_s", 2: "brs3_logit", 3: "nmibc_points"}


def prior_for_task(task: Any) -> Prior:
    """The default prior of a task (an id or a Task)."""
    task_id = int(getattr(task, "id", task))
    if task_id not in TASK_PRIORS:
        raise KeyError(f"no prior for task {task!r}")
    return PRIORS.build(TASK_PRIORS[task_id])
