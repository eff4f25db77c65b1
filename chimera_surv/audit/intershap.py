"""Exact modality-level Shapley values and pairwise interactions (InterSHAP) for M modalities.

Why: seed 000 audits Cox fusion models with InterSHAP: does a model learn cross-modal synergy or just add
complementary signals? The core here is model-agnostic: a value function ``f(embeddings) -> (B,)`` (the raw
log-risk for Cox, -E[T] or E[T] for DeepHit, the logit for Task 2), the per-modality embeddings of the
patients to explain, and a masker (``maskers.py``). All 2^M coalitions are evaluated exactly, batched
(2^M x N x K rows per forward, chunked by patients under ``max_rows``), in float64.

Definitions (seed-methods.md §1.5, SHAP-interaction convention):
- phi_i   = sum_{S ⊆ N\\{i}} |S|!(M-|S|-1)!/M! [v(S∪i) - v(S)]
- phi_ij  = sum_{S ⊆ N\\{i,j}} |S|!(M-|S|-2)!/(2(M-1)!) [v(S∪ij) - v(S∪i) - v(S∪j) + v(S)]   (half the SII)
- Phi_ii  = phi_i - sum_{j≠i} phi_ij,  Phi_ij = phi_ij;  sum_ij Phi_ij = v(N) - v(∅)  (efficiency).
For M = 2 these are exactly the seed's eq. 2-4 (phi_int = Phi_12). Percentages live in ``estimators.py``.

Pairwise terms cannot show synergy among three or more modalities: they absorb it (on a pure a·b·c game under
zero-mean masking the primary estimator says 75% and the "main effects" turn negative). So the Harsanyi
dividends are reported beside them: d(T) = sum_{S ⊆ T} (-1)^{|T|-|S|} v(S) (the Möbius transform of v) is the
interaction owed to T and to no sub-coalition, sum_{T≠∅} d(T) = v(N) - v(∅); the dividend of all M modalities is
the M-way term (three-way for M = 3; for M = 2 it is 2·Phi_12, the pair's full SII).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from math import factorial
from typing import Any

import numpy as np

from chimera_surv.audit.estimators import ESTIMATORS, Estimate, estimate_all
from chimera_surv.audit.maskers import Baseline, Embeddings, Masker, build_masker

ValueFunction = Callable[..., Any]  # f(embeddings) -> (B,), or f(embeddings, present) -> (B,)


def as_numpy(x: Any) -> np.ndarray:
    """Tensor or array -> float64 numpy (detached, on CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().to("cpu").double().numpy()
    return np.asarray(x, dtype=np.float64)


def coalition_masks(m: int) -> np.ndarray:
    """(2^M, M) bool: coalition c contains modality i iff bit i of c is set (c = 0 is ∅, 2^M-1 is N)."""
    if m < 1:
        raise ValueError("InterSHAP needs at least one modality")
    c = np.arange(2**m)[:, None]
    return ((c >> np.arange(m)[None, :]) & 1).astype(bool)


def shapley_operator(m: int) -> np.ndarray:
    """(2^M, M) weights W with phi = v @ W (closed-form Shapley coefficients of every coalition value)."""
    masks = coalition_masks(m)
    sizes = masks.sum(1)
    w = np.zeros((2**m, m))
    for c in range(2**m):
        for i in range(m):
            if masks[c, i]:  # v(T) with i in T appears as v(S ∪ i), |S| = |T| - 1
                s = sizes[c] - 1
                w[c, i] += factorial(s) * factorial(m - s - 1) / factorial(m)
            else:  # v(T) with i not in T appears as -v(S), |S| = |T|
                s = sizes[c]
                w[c, i] -= factorial(s) * factorial(m - s - 1) / factorial(m)
    return w


def interaction_operator(m: int) -> np.ndarray:
    """(2^M, M, M) weights K with Phi = einsum('nc,cij->nij', v, K): the full interaction matrix."""
    masks = coalition_masks(m)
    sizes = masks.sum(1)
    k = np.zeros((2**m, m, m))
    for i in range(m):
        for j in range(m):
            if i == j:
                continue
            for c in range(2**m):
                a, b = masks[c, i], masks[c, j]
                s = sizes[c] - int(a) - int(b)
                weight = factorial(s) * factorial(m - s - 2) / (2 * factorial(m - 1))
                k[c, i, j] = weight if a == b else -weight
    w = shapley_operator(m)
    for i in range(m):  # main effect: Shapley value minus its pairwise interactions
        k[:, i, i] = w[:, i] - k[:, i, :].sum(axis=1)
    return k


def harsanyi_operator(m: int) -> np.ndarray:
    """(2^M, 2^M) H with dividends = v @ H: H[S, T] = (-1)^{|T|-|S|} when S ⊆ T, else 0."""
    n = 2**m
    s_idx, t_idx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    sizes = coalition_masks(m).sum(1)
    sign = np.where((sizes[t_idx] - sizes[s_idx]) % 2 == 0, 1.0, -1.0)
    return np.where((s_idx & t_idx) == s_idx, sign, 0.0)


def harsanyi_summary(dividends: np.ndarray, modalities: list[str]) -> dict[str, Any]:
    """JSON-ready: the all-M dividend (mean, mean|d|, its % of sum_T mean|d(T)|), % by order, mean|d| per coalition.

    Percentages are shares of the mean absolute dividends over the non-empty coalitions (0 when all are 0).
    """
    m = len(modalities)
    masks = coalition_masks(m)
    sizes = masks.sum(1)
    mean_abs = np.abs(dividends).mean(0) if len(dividends) else np.zeros(2**m)
    total = float(mean_abs[1:].sum())

    def pct(x: float) -> float:
        return 100.0 * x / total if total > 0 else 0.0

    def label(c: int) -> str:
        return "*".join(mod for mod, inside in zip(modalities, masks[c]) if inside)

    return {
        "description": "Harsanyi dividends d(T) = sum_{S in T} (-1)^{|T|-|S|} v(S); pct = share of mean|d| over "
                       "the non-empty coalitions; all_m = the dividend of all M modalities (three-way for M = 3)",
        "order": m,
        "all_m": {"coalition": label(2**m - 1), "mean": float(dividends[:, -1].mean()) if len(dividends) else 0.0,
                  "mean_abs": float(mean_abs[-1]), "pct": pct(float(mean_abs[-1]))},
        "by_order_pct": {str(k): pct(float(mean_abs[sizes == k].sum())) for k in range(1, m + 1)},
        "mean_abs": {label(c): float(mean_abs[c]) for c in range(1, 2**m)},
    }


@dataclass
class InterSHAPResult:
    """Per-patient game values, Shapley values and interaction matrices, plus timing and provenance."""

    modalities: list[str]
    coalition_values: np.ndarray  # (N, 2^M), column c = v(coalition c) per coalition_masks
    shapley: np.ndarray  # (N, M)
    matrix: np.ndarray  # (N, M, M)
    masker: dict[str, Any]
    output: str = "risk"
    timing: dict[str, float] = field(default_factory=dict)
    patient_ids: list[str] | None = None

    @property
    def base_value(self) -> np.ndarray:
        return self.coalition_values[:, 0]

    @property
    def full_value(self) -> np.ndarray:
        return self.coalition_values[:, -1]

    @property
    def dividends(self) -> np.ndarray:
        """(N, 2^M) Harsanyi dividends, columns ordered as the coalitions; column -1 = all M modalities."""
        return self.coalition_values @ harsanyi_operator(len(self.modalities))

    def estimate(self, name: str, **kwargs: Any) -> Estimate:
        return ESTIMATORS.build({"name": name, **kwargs})(self.matrix, self.modalities)

    def estimates(self) -> dict[str, Estimate]:
        return estimate_all(self.matrix, self.modalities)

    def summary(self, per_patient: bool = False) -> dict[str, Any]:
        """JSON-ready summary: every named estimator, mean matrices, timing; optionally per-patient values."""
        out: dict[str, Any] = {
            "modalities": self.modalities,
            "n_patients": int(self.matrix.shape[0]),
            "output": self.output,
            "masker": self.masker,
            "timing": self.timing,
            "mean_base_value": float(self.base_value.mean()) if len(self.base_value) else 0.0,
            "mean_full_value": float(self.full_value.mean()) if len(self.full_value) else 0.0,
            "mean_matrix": self.matrix.mean(0).tolist() if len(self.matrix) else None,
            "mean_abs_matrix": np.abs(self.matrix).mean(0).tolist() if len(self.matrix) else None,
            "estimators": {k: e.to_dict() for k, e in self.estimates().items()},
            "harsanyi": harsanyi_summary(self.dividends, self.modalities),
        }
        if per_patient:
            out["per_patient"] = {
                "patient_ids": self.patient_ids,
                "shapley": self.shapley.tolist(),
                "matrix": self.matrix.tolist(),
                "coalition_values": self.coalition_values.tolist(),
                "all_m_dividend": self.dividends[:, -1].tolist(),
            }
        return out


def shapley_from_values(values: np.ndarray, modalities: list[str], **kwargs: Any) -> InterSHAPResult:
    """Closed-form Shapley values and interaction matrices from coalition values (N, 2^M)."""
    values = np.asarray(values, dtype=np.float64)
    m = len(modalities)
    if values.ndim != 2 or values.shape[1] != 2**m:
        raise ValueError(f"expected coalition values of shape (N, {2**m}), got {values.shape}")
    shapley = values @ shapley_operator(m)
    matrix = np.einsum("nc,cij->nij", values, interaction_operator(m))
    return InterSHAPResult(list(modalities), values, shapley, matrix, **kwargs)


def _rows_for_chunk(
    x: Embeddings, xp: dict[str, np.ndarray], base: Baseline, modalities: list[str], lo: int, hi: int,
    missing: str = "null",
) -> tuple[Embeddings, dict[str, np.ndarray]]:
    """Stack (2^M, n, K) rows: modality m from the patient if m ∈ S, else from baseline row k.

    ``missing="null"``: a modality the patient lacks (present False) stays the patient's own (missing) input in
    every coalition, so it is a null player (phi = 0, no interaction). ``"masked"``: it is replaced like any
    other modality, so the attribution measures the effect of missingness against the baseline.
    """
    masks = coalition_masks(len(modalities))
    n, k, c = hi - lo, base.size, masks.shape[0]
    emb, pres = {}, {}
    for idx, m in enumerate(modalities):
        keep = masks[:, idx][:, None, None, None]  # (C, 1, 1, 1)
        if missing == "null":
            keep = keep | ~xp[m][lo:hi][None, :, None, None]  # (C, n, 1, 1)
        patient = np.asarray(x[m][lo:hi], dtype=np.float64)[None, :, None, :]  # (1, n, 1, d)
        background = base.embeddings[m][None, None, :, :]  # (1, 1, K, d)
        d = patient.shape[-1]
        rows = np.broadcast_to(np.where(keep, patient, background), (c, n, k, d)).reshape(c * n * k, d)
        emb[m] = np.require(rows, requirements="W")  # writable: torch warns on read-only views
        p_keep = xp[m][lo:hi][None, :, None]
        p_bg = base.present[m][None, None, :]
        flags = np.broadcast_to(np.where(keep[..., 0], p_keep, p_bg), (c, n, k)).reshape(c * n * k)
        pres[m] = np.require(flags, requirements="W")
    return emb, pres


def coalition_values(
    value_fn: ValueFunction,
    explain: Embeddings,
    baseline: Baseline,
    modalities: list[str] | None = None,
    present: dict[str, np.ndarray] | None = None,
    with_presence: bool = False,
    max_rows: int = 65536,
    missing: str = "null",
) -> tuple[np.ndarray, dict[str, float]]:
    """v(S) for every patient and coalition: (N, 2^M), plus timing {seconds, rows, forward_calls}.

    ``with_presence=True`` calls ``value_fn(embeddings, present)`` (present: m -> (B,) bool) so a network can
    route masked modalities through its missing-modality path; otherwise ``value_fn(embeddings)``.
    """
    modalities = list(modalities or explain.keys())
    n = int(np.asarray(explain[modalities[0]]).shape[0])
    xp = {m: np.ones(n, dtype=bool) if present is None or m not in present
          else np.asarray(present[m], dtype=bool).reshape(n) for m in modalities}
    c, k = 2 ** len(modalities), baseline.size
    per_patient = c * k
    chunk = max(1, max_rows // per_patient)
    out = np.empty((n, c), dtype=np.float64)
    calls, t0 = 0, time.perf_counter()
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        emb, pres = _rows_for_chunk(explain, xp, baseline, modalities, lo, hi, missing)
        raw = value_fn(emb, pres) if with_presence else value_fn(emb)
        y = as_numpy(raw).reshape(-1)
        if y.size != c * (hi - lo) * k:
            raise ValueError(f"value function returned {y.size} values for {c * (hi - lo) * k} rows")
        if not np.all(np.isfinite(y)):
            raise ValueError("value function returned non-finite values; InterSHAP would be NaN")
        out[lo:hi] = y.reshape(c, hi - lo, k).mean(axis=2).T
        calls += 1
    seconds = time.perf_counter() - t0
    return out, {"seconds": seconds, "rows": float(n * per_patient), "forward_calls": float(calls),
                 "seconds_per_patient": seconds / n if n else 0.0}


def intershap(
    value_fn: ValueFunction,
    explain: Embeddings,
    background: Embeddings,
    masker: str | dict[str, Any] | Masker = "mean",
    modalities: list[str] | None = None,
    present: dict[str, np.ndarray] | None = None,
    background_present: dict[str, np.ndarray] | None = None,
    with_presence: bool = False,
    output: str = "risk",
    patient_ids: list[str] | None = None,
    max_rows: int = 65536,
    missing: str = "null",
) -> InterSHAPResult:
    """Audit one value function: embeddings of the patients to explain + background set + masker.

    ``background`` should be the training embeddings (mean / shuffle maskers draw on it). ``present`` marks
    the explained patients' missing modalities; ``missing`` says how they are treated (see ``_rows_for_chunk``).
    """
    modalities = list(modalities or explain.keys())
    msk = build_masker(masker)
    explain = {m: as_numpy(explain[m]) for m in modalities}
    background = {m: as_numpy(background[m]) for m in modalities}
    base = msk.fit(background, background_present)
    if missing not in ("null", "masked"):
        raise ValueError(f"missing must be 'null' or 'masked', got '{missing}'")
    values, timing = coalition_values(value_fn, explain, base, modalities, present, with_presence, max_rows,
                                      missing)
    return shapley_from_values(values, modalities, masker={**msk.to_dict(), **base.description},
                               output=output, timing=timing, patient_ids=patient_ids)
