"""Output heads: fused vector → ``logits`` and a scalar ``risk`` (higher = worse) per patient.

``cox`` (log-risk; optional bounded CA-MLIF output), ``deephit`` (pmf over time bins; risk = −E[T] or the
log-odds of an event by a horizon; pycox beyond-horizon class or the ModalSurv plain softmax) and ``binary`` (Task 2 BRS3 logit + probability).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from chimera_surv.models.modality import mlp_layers
from chimera_surv.registry import Registry

HEADS: Registry[Any] = Registry("head")


class CoxHead(nn.Module):
    """Linear (or DeepSurv MLP) → 1 log-risk. ``output_range`` R bounds it as σ(z)·R − R/2 (CA-MLIF: R=6)."""

    kind = "cox"

    def __init__(self, in_dim: int, hidden: Sequence[int] = (), dropout: float = 0.0,
                 output_range: float | None = None) -> None:
        super().__init__()
        body, d = mlp_layers(in_dim, hidden, dropout, "relu") if hidden else (nn.Identity(), in_dim)
        self.body = body
        self.linear = nn.Linear(d, 1)
        self.output_range = output_range

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        logits = self.linear(self.body(x))
        risk = logits.squeeze(-1)
        if self.output_range:
            risk = torch.sigmoid(risk) * self.output_range - self.output_range / 2
        return {"logits": logits, "risk": risk}


class DeepHitHead(nn.Module):
    """Linear → ``n_bins`` logits; pmf by softmax (pycox: with a zero "beyond the last cut" logit).

    ``bin_times`` are the times the bins stand for (pycox: the cuts, in months; ModalSurv: bin indices,
    the default, or bin centres). ``risk`` chooses the ranking score (higher = worse):
    - ``"expected_time"`` (default): −E[T] = −Σ_k pmf_k τ_k; the beyond-horizon mass counts at
      ``beyond_time`` (default: the last bin time), so E[T] is bounded by the grid.
    - ``"event_probability"``: logit F(h), F(h) = P(T ≤ h) = the mass of the bins whose time is ≤ ``horizon``
      (h in the units of ``bin_times``), computed exactly as logsumexp(logits ≤ h) − logsumexp(logits > h), so
      it never saturates to ±inf. The horizon snaps to the grid and keeps ≥ 1 bin on each side.
    ``grid`` records how train/networks.py fills ``bin_times`` (pycox: "equidistant" | "quantiles";
    ModalSurv: "modalsurv" = its code's edges, "fold" = [0, max training time]); the head only stores it.
    """

    kind = "deephit"
    RISKS = ("expected_time", "event_probability")

    def __init__(self, in_dim: int, n_bins: int = 30, variant: str = "pycox",
                 bin_times: Sequence[float] | None = None, beyond_time: float | None = None,
                 risk: str = "expected_time", horizon: float | None = None, grid: str | None = None) -> None:
        super().__init__()
        if variant not in ("pycox", "modalsurv"):
            raise ValueError(f"unknown DeepHit variant '{variant}'")
        if risk not in self.RISKS:
            raise ValueError(f"unknown DeepHit risk '{risk}' (known: {self.RISKS})")
        if risk == "event_probability" and horizon is None:
            raise ValueError("risk 'event_probability' needs a horizon (train/networks.py fills the fold's "
                             "median event time)")
        self.linear = nn.Linear(in_dim, n_bins)
        self.variant, self.risk_kind, self.grid = variant, risk, grid
        times = torch.arange(n_bins, dtype=torch.float32) if bin_times is None else \
            torch.as_tensor(list(bin_times), dtype=torch.float32)
        if times.numel() != n_bins:
            raise ValueError("bin_times must have n_bins entries")
        n_total = n_bins + (1 if variant == "pycox" else 0)
        self.horizon_bins = 0
        if horizon is not None:  # bins [0, k) are "by the horizon"; 1 ≤ k ≤ n_total − 1
            self.horizon_bins = min(max(int((times <= float(horizon)).sum()), 1), n_total - 1)
        if variant == "pycox":
            last = float(times[-1]) if beyond_time is None else float(beyond_time)
            times = torch.cat([times, torch.tensor([last])])
        self.register_buffer("bin_times", times, persistent=False)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        logits = self.linear(x)
        padded = torch.cat([logits, torch.zeros_like(logits[:, :1])], 1) if self.variant == "pycox" else logits
        pmf = torch.softmax(padded, dim=1)
        n = logits.shape[1]
        survival = 1.0 - pmf[:, :n].cumsum(dim=1)
        if self.risk_kind == "event_probability":
            k = self.horizon_bins
            risk = torch.logsumexp(padded[:, :k], dim=1) - torch.logsumexp(padded[:, k:], dim=1)
        else:
            risk = -(pmf * self.bin_times.to(pmf.dtype)).sum(dim=1)
        return {"logits": logits, "risk": risk, "pmf": pmf, "survival": survival}


class BinaryHead(nn.Module):
    """Task 2: Linear → 1 logit (risk = logit, higher = BRS3), probability = σ(logit)."""

    kind = "binary"

    def __init__(self, in_dim: int, hidden: Sequence[int] = (), dropout: float = 0.0) -> None:
        super().__init__()
        body, d = mlp_layers(in_dim, hidden, dropout, "relu") if hidden else (nn.Identity(), in_dim)
        self.body = body
        self.linear = nn.Linear(d, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        logits = self.linear(self.body(x))
        risk = logits.squeeze(-1)
        return {"logits": logits, "risk": risk, "probability": torch.sigmoid(risk)}


@HEADS.register("cox")
def cox(in_dim: int, hidden: Sequence[int] = (), dropout: float = 0.0,
        output_range: float | None = None) -> CoxHead:
    return CoxHead(in_dim, hidden, dropout, output_range)


@HEADS.register("deephit")
def deephit(in_dim: int, n_bins: int = 30, variant: str = "pycox", bin_times: Sequence[float] | None = None,
            beyond_time: float | None = None, risk: str = "expected_time", horizon: float | None = None,
            grid: str | None = None) -> DeepHitHead:
    return DeepHitHead(in_dim, n_bins, variant, bin_times, beyond_time, risk, horizon, grid)


@HEADS.register("binary")
def binary(in_dim: int, hidden: Sequence[int] = (), dropout: float = 0.0) -> BinaryHead:
    return BinaryHead(in_dim, hidden, dropout)
