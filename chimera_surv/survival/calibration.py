"""Risk → output maps, fitted on a training fold and stored as JSON arrays (no pickle).

Tasks 1 and 3 are scored by Harrell's C of the *negated time* we write, so the risk → months map must be
strictly decreasing: any tie scores ½. The 2nd-place Task 3 entry's stepwise KM map (seed 002, reproduced
exactly here as ``km_stepwise_seed002``) gives the ≈56 % lowest-risk patients the same time, because the
training KM curve never drops below 0.56. ``km_quantile`` (the default) keeps the idea — a patient at the
u-th quantile of training risks gets the time where the training KM curve crosses u — but interpolates
both the risk quantile and the KM curve linearly, extends the curve beyond its last event with an
exponential tail, and adds a bounded tie-breaker, so distinct risks give distinct times.

Task 2 outputs a probability: ``sigmoid`` (identity on the logit) and ``platt`` (fitted a·logit + b).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np

from chimera_surv.registry import Registry

CALIBRATIONS: Registry[Any] = Registry("calibration")


def kaplan_meier(times: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Product-limit estimate at every distinct observed time (lifelines semantics, right-continuous)."""
    times = np.asarray(times, dtype=np.float64)
    events = np.asarray(events).astype(bool)
    uniq = np.unique(times)
    at_risk = len(times) - np.searchsorted(np.sort(times), uniq, side="left")
    deaths = np.array([np.sum(events & (times == t)) for t in uniq], dtype=np.float64)
    surv = np.cumprod(1.0 - deaths / at_risk)
    return uniq, surv


def step_value(knot_t: np.ndarray, knot_s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Value of the right-continuous step function (S=1 before the first knot) at ``t``."""
    idx = np.searchsorted(knot_t, t, side="right") - 1
    return np.where(idx >= 0, knot_s[np.clip(idx, 0, None)], 1.0)


def count_tied(values: np.ndarray) -> int:
    """Number of entries whose value is shared with at least one other entry."""
    _, counts = np.unique(np.asarray(values), return_counts=True)
    return int(counts[counts > 1].sum())


def _floats(x: Any) -> list[float]:
    return [float(v) for v in np.asarray(x, dtype=np.float64).reshape(-1)]


class Calibration:
    """Interface: ``fit(risks, times, events)``, ``predict(risks)``, ``to_dict()``, ``from_dict(d)``."""

    name: ClassVar[str] = ""
    kind: ClassVar[Literal["months", "probability"]] = "months"

    def fit(self, risks: np.ndarray, times: np.ndarray | None = None,
            events: np.ndarray | None = None) -> Calibration:
        return self

    def predict(self, risks: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.state()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        obj = cls.__new__(cls)
        obj.load_state({k: v for k, v in d.items() if k != "name"})
        return obj

    def load_state(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)


def calibration_from_dict(d: dict[str, Any]) -> Calibration:
    """Rebuild any registered calibration from its ``to_dict()``."""
    return CALIBRATIONS.get(d["name"]).from_dict(d)


@CALIBRATIONS.register("km_quantile")
class KMQuantile(Calibration):
    """Tie-free interpolated KM quantile of the training risks (default for Tasks 1 and 3)."""

    name = "km_quantile"

    def __init__(self, tie_eps: float = 1e-6) -> None:
        self.tie_eps = float(tie_eps)

    def fit(self, risks, times=None, events=None) -> KMQuantile:
        risks = np.asarray(risks, dtype=np.float64).reshape(-1)
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        events = np.asarray(events).astype(bool).reshape(-1)
        if not (np.isfinite(risks).all() and np.isfinite(times).all()) or risks.size == 0:
            raise ValueError("km_quantile needs finite, non-empty risks and times")
        # Risk quantile knots: mid-ranks of the distinct training risks, strictly inside (0, 1).
        v, counts = np.unique(risks, return_counts=True)
        below = np.cumsum(counts) - counts
        self.risk_knots = _floats(v)
        self.u_knots = _floats((below + counts / 2.0) / risks.size)
        spread = float(np.std(risks))
        self.scale = spread if spread > 1e-12 else 1.0
        # KM knots at event times only, so the curve is strictly decreasing between knots. Events at t <= 0 give
        # no knot of their own: the start knot (0, 1) stands in, and their drop is spread linearly up to the first
        # positive event time (a knot at t = 0 beside (0, 1) would map every u above S(0) onto t = 0, leaving the
        # highest risks separated only by the tie-breaker).
        km_t, km_s = kaplan_meier(times, events)
        drop = np.diff(np.r_[1.0, km_s]) < 0
        t_knots, s_knots = km_t[drop], km_s[drop]
        keep = (s_knots > 0) & (t_knots > 0)  # a curve that reaches 0 ends at its last positive knot
        self.km_t = [0.0] + _floats(t_knots[keep])
        self.km_s = [1.0] + _floats(s_knots[keep])
        # Exponential tail beyond the last knot: the cohort's constant-hazard MLE, compressed below a cap of
        # 1.25 × the longest training follow-up so that no output claims decades nobody observed.
        self.tail_rate = float(max(events.sum(), 1) / max(times.sum(), 1e-12))
        self.tail_cap = float(max(1.25 * times.max(), self.km_t[-1] + 1.0))
        return self

    def _log_u(self, r: np.ndarray) -> np.ndarray:
        v, u = np.asarray(self.risk_knots), np.asarray(self.u_knots)
        inner = np.interp(r, v, u) if len(v) > 1 else np.full_like(r, u[0])
        log_u = np.log(np.clip(inner, 1e-300, None))
        low = r < v[0]
        log_u[low] = math.log(u[0]) + (r[low] - v[0]) / self.scale
        high = r > v[-1]
        # 1 - u decays exponentially above the highest training risk.
        log_u[high] = np.log1p(-(1.0 - u[-1]) * np.exp(-(r[high] - v[-1]) / self.scale))
        return log_u

    def predict(self, risks) -> np.ndarray:
        r = np.asarray(risks, dtype=np.float64).reshape(-1)
        if not np.isfinite(r).all():
            raise ValueError("risks must be finite")
        log_s = self._log_u(r)
        kt, ks = np.asarray(self.km_t), np.asarray(self.km_s)
        s_min = ks[-1]
        inside = log_s >= math.log(s_min)
        t = np.empty_like(r)
        t[inside] = np.interp(np.exp(log_s[inside]), ks[::-1], kt[::-1])
        extra = (math.log(s_min) - log_s[~inside]) / self.tail_rate
        span = self.tail_cap - kt[-1]
        t[~inside] = kt[-1] + span * extra / (extra + span)  # strictly increasing in `extra`, below the cap
        tie_break = self.tie_eps * (0.5 - np.arctan(r) / math.pi)  # in (0, eps), strictly decreasing
        return np.maximum(t, 0.0) + tie_break

    def state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in
                ("tie_eps", "risk_knots", "u_knots", "scale", "km_t", "km_s", "tail_rate", "tail_cap")}


@CALIBRATIONS.register("km_stepwise_seed002")
class KMStepwiseSeed002(Calibration):
    """Seed 002's exact map (Docker/inference.py): nearest KM probability to the risk's rank quantile."""

    name = "km_stepwise_seed002"

    def fit(self, risks, times=None, events=None) -> KMStepwiseSeed002:
        km_t, km_s = kaplan_meier(np.asarray(times, dtype=np.float64), np.asarray(events).astype(bool))
        if km_t[0] > 0:
            km_t, km_s = np.r_[0.0, km_t], np.r_[1.0, km_s]
        self.km_times, self.km_probs = _floats(km_t), _floats(km_s)
        self.train_risks = _floats(risks)
        return self

    def predict(self, risks) -> np.ndarray:
        r = np.asarray(risks, dtype=np.float64).reshape(-1)
        train = np.asarray(self.train_risks)
        probs, km_times = np.asarray(self.km_probs), np.asarray(self.km_times)
        n = train.size + 1
        rank = 1 + (train[None, :] >= r[:, None]).sum(axis=1)  # the new risk itself counts as ≥ r
        p = 1.0 - (rank - 1) / n
        idx = np.argmin(np.abs(probs[None, :] - p[:, None]), axis=1)  # first index on ties
        return np.maximum(0.0, km_times[idx])

    def state(self) -> dict[str, Any]:
        return {"km_times": self.km_times, "km_probs": self.km_probs, "train_risks": self.train_risks}


@CALIBRATIONS.register("deephit_expected_time")
class DeepHitExpectedTime(Calibration):
    """Months from a DeepHit risk = −E[T]: t = offset + scale·E[T] (scale = bin width for bin-index heads).

    Kept strictly positive and decreasing: below ``floor`` months the line continues as a rational tail.
    """

    name = "deephit_expected_time"

    def __init__(self, scale: float = 1.0, offset: float = 0.0, floor: float = 1e-3) -> None:
        self.scale, self.offset, self.floor = float(scale), float(offset), float(floor)

    def predict(self, risks) -> np.ndarray:
        r = np.asarray(risks, dtype=np.float64).reshape(-1)
        t = self.offset + self.scale * (-r)
        # below the floor a rational tail floor²/(2·floor − t): positive, C¹, no underflow
        soft = self.floor**2 / (2.0 * self.floor - np.minimum(t, self.floor))
        return np.where(t >= self.floor, t, soft)

    def state(self) -> dict[str, Any]:
        return {"scale": self.scale, "offset": self.offset, "floor": self.floor}


@CALIBRATIONS.register("sigmoid")
class SigmoidProbability(Calibration):
    """Task 2: P(BRS3) = σ(logit) (the head was trained with BCE, so the logit is already calibrated-ish)."""

    name = "sigmoid"
    kind = "probability"

    def predict(self, risks) -> np.ndarray:
        r = np.asarray(risks, dtype=np.float64).reshape(-1)
        return 0.5 * (1.0 + np.tanh(0.5 * r))  # overflow-free sigmoid


@CALIBRATIONS.register("platt")
class PlattProbability(Calibration):
    """Task 2: P = σ(a·logit + b) fitted by logistic regression on held-out logits (``events`` = labels)."""

    name = "platt"
    kind = "probability"

    def __init__(self, a: float = 1.0, b: float = 0.0) -> None:
        self.a, self.b = float(a), float(b)

    def fit(self, risks, times=None, events=None) -> PlattProbability:
        x = np.asarray(risks, dtype=np.float64).reshape(-1)
        y = np.asarray(events, dtype=np.float64).reshape(-1)
        a, b = 1.0, 0.0
        for _ in range(100):  # Newton steps with a tiny ridge for separable data
            p = 0.5 * (1.0 + np.tanh(0.5 * (a * x + b)))
            w = p * (1 - p) + 1e-9
            grad = np.array([np.sum((p - y) * x) + 1e-3 * a, np.sum(p - y)])
            hess = np.array([[np.sum(w * x * x) + 1e-3, np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
            step = np.linalg.solve(hess, grad)
            a, b = a - step[0], b - step[1]
            if np.abs(step).max() < 1e-10:
                break
        self.a, self.b = float(a), float(b)
        return self

    def predict(self, risks) -> np.ndarray:
        r = np.asarray(risks, dtype=np.float64).reshape(-1)
        return 0.5 * (1.0 + np.tanh(0.5 * (self.a * r + self.b)))

    def state(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b}


class SurvivalCurve:
    """Per-patient survival S(t | risk) = exp(-H0(t) · exp(beta · (risk - centre))): a one-covariate Cox model
    on the ensemble's out-of-fold risk with a Breslow baseline, fitted at export (train/export.py) and stored in
    the bundle as JSON arrays. Why: the calibrated output is one number (months at the KM quantile); a clinician
    asks for the probability of being event-free at a horizon. `max_follow_up` is the longest training time:
    any time past it is an extrapolation. `risk_range` (lo, hi), when set, bounds the risk before the Cox term: the
    curve was fitted on risks winsorised to that range (train/survival_curve.py), so one far-out risk neither
    flattened its slope nor, at inference, runs the curve past what the fit saw; ranks and months are untouched."""

    def __init__(self, beta: float, centre: float, knot_t: list[float], knot_h: list[float],
                 max_follow_up: float, risk_range: tuple[float, float] | None = None) -> None:
        self.beta, self.centre, self.max_follow_up = float(beta), float(centre), float(max_follow_up)
        self.knot_t, self.knot_h = [float(v) for v in knot_t], [float(v) for v in knot_h]
        self.risk_range = None if risk_range is None else (float(risk_range[0]), float(risk_range[1]))

    def bounded(self, risk: float) -> float:
        """The risk the Cox term sees: `risk` clipped to `risk_range` (unchanged when there is none)."""
        if self.risk_range is None:
            return float(risk)
        return min(max(float(risk), self.risk_range[0]), self.risk_range[1])

    def survival(self, risk: float, times: list[float]) -> list[float]:
        """S(t) at each time (months); step function, S = 1 before the first event time."""
        h0 = step_value(np.asarray(self.knot_t), np.asarray(self.knot_h), np.asarray(times, dtype=float))
        h0 = np.where(np.searchsorted(self.knot_t, times, side="right") > 0, h0, 0.0)
        return [float(v) for v in np.exp(-h0 * math.exp(self.beta * (self.bounded(risk) - self.centre)))]

    def median(self, risk: float) -> float | None:
        """First time (months) at which S(t) <= 0.5; None when the curve never falls that far in the data."""
        s = np.asarray(self.survival(risk, self.knot_t))
        below = np.nonzero(s <= 0.5)[0]
        return float(self.knot_t[below[0]]) if len(below) else None

    def to_dict(self) -> dict[str, Any]:
        doc = {"name": "cox_breslow", "beta": self.beta, "centre": self.centre, "knot_t": self.knot_t,
               "knot_h": self.knot_h, "max_follow_up": self.max_follow_up}
        return doc if self.risk_range is None else {**doc, "risk_range": list(self.risk_range)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SurvivalCurve:
        if d.get("name") != "cox_breslow":
            raise ValueError(f"unknown survival curve {d.get('name')!r}")
        bounds = d.get("risk_range")  # absent in bundles exported before the curve was winsorised
        if bounds is not None and not _ordered_pair(bounds):
            raise ValueError(f"survival curve: risk_range must be two finite numbers, low <= high; got {bounds!r}")
        curve = cls(d["beta"], d["centre"], d["knot_t"], d["knot_h"], d["max_follow_up"], bounds)
        if not (len(curve.knot_t) == len(curve.knot_h) and math.isfinite(curve.beta)):
            raise ValueError("survival curve: knot_t and knot_h differ in length, or beta is not finite")
        return curve


def _ordered_pair(value: Any) -> bool:
    """Two finite numbers (not booleans), the first not above the second."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return False
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return False
    return value[0] <= value[1]
