"""Survival and classification losses, hand-written (seed-methods.md §0.1, §0.3, §4.3; ecosystem.md §3).

pycox / torchsurv / lifelines / scikit-survival serve only as test oracles: these ~150 lines have no fragile
dependencies and are exactly what the seeds describe, each variant behind a flag.

Functional API (tensors in, scalar out) plus ``LOSSES``: a registry of loss *objects* called as
``loss(outputs, targets)`` with ``outputs`` from ``SurvivalNetwork.forward`` and ``targets`` holding
``time``/``event`` (survival), ``label`` (binary) or ``bin`` (pre-discretised DeepHit index).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from chimera_surv.registry import Registry
from chimera_surv.survival.discretize import modalsurv_bin, pycox_bin

Ties = Literal["breslow", "efron", "order"]
Reduction = Literal["events", "batch", "sum"]

LOSSES: Registry[Any] = Registry("loss")


def _check_survival(risk: Tensor, time: Tensor, event: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    risk = risk.reshape(-1)
    time = time.reshape(-1).to(risk.dtype)
    event = event.reshape(-1).to(risk.dtype)
    if not (risk.numel() == time.numel() == event.numel()):
        raise ValueError(f"risk/time/event sizes differ: {risk.numel()}, {time.numel()}, {event.numel()}")
    if not torch.isfinite(time).all():
        raise ValueError("time contains non-finite values")
    return risk, time, event


def cox_ph_loss(risk: Tensor, time: Tensor, event: Tensor, ties: Ties = "breslow",
                reduction: Reduction = "events") -> Tensor:
    """Negative Cox partial log-likelihood.

    ties: ``breslow`` (risk set t_j >= t_i), ``efron`` (Efron's correction), ``order`` (the seeds'
    sorted-cumsum risk set, which depends on the order of tied times; stable sort keeps it deterministic).
    reduction: ``events`` divides by the number of events (default), ``batch`` by B (PG-MLIF/CA-MLIF,
    seed 000 MLP), ``sum`` none. A batch without events returns a zero that keeps the graph.
    """
    risk, time, event = _check_survival(risk, time, event)
    n_events = event.sum()
    if n_events.item() == 0:
        return risk.sum() * 0.0
    if ties == "order":
        order = torch.argsort(time, descending=True, stable=True)
        log_risk_set = torch.empty_like(risk)
        log_risk_set[order] = torch.logcumsumexp(risk[order], dim=0)
        total = -(event * (risk - log_risk_set)).sum()
    elif ties == "breslow":
        total = -(event * (risk - _log_risk_set(risk, time))).sum()
    elif ties == "efron":
        total = _efron_nll(risk, time, event)
    else:
        raise ValueError(f"unknown ties '{ties}'")
    return _reduce(total, n_events, risk.numel(), reduction)


def _reduce(total: Tensor, n_events: Tensor, batch: int, reduction: Reduction) -> Tensor:
    if reduction == "events":
        return total / n_events
    if reduction == "batch":
        return total / batch
    if reduction == "sum":
        return total
    raise ValueError(f"unknown reduction '{reduction}'")


def _log_risk_set(risk: Tensor, time: Tensor) -> Tensor:
    """log Σ_{j: t_j >= t_i} exp(r_j) for every i, in O(B log B)."""
    order = torch.argsort(time, descending=True, stable=True)
    lcse = torch.logcumsumexp(risk[order], dim=0)
    ascending = torch.sort(time).values
    n_at_risk = time.numel() - torch.searchsorted(ascending, time, side="left")
    return lcse[n_at_risk - 1]


def _efron_nll(risk: Tensor, time: Tensor, event: Tensor) -> Tensor:
    """Efron: Σ_events r_i − Σ_groups Σ_{l<d} log(S_R − (l/d) S_D), computed in log space."""
    ev = event > 0
    log_sr = _log_risk_set(risk, time)[ev]
    ev_time, ev_risk = time[ev], risk[ev]
    uniq, group = torch.unique(ev_time, return_inverse=True)
    d = torch.zeros(len(uniq), dtype=risk.dtype, device=risk.device).index_add_(0, group, torch.ones_like(ev_risk))
    shift = ev_risk.max().detach()
    s_d = torch.zeros(len(uniq), dtype=risk.dtype, device=risk.device).index_add_(0, group, torch.exp(ev_risk - shift))
    log_sd = torch.log(s_d)[group] + shift
    # l_i = position of event i among the events of its time group (0..d-1).
    order = torch.argsort(group, stable=True)
    first = torch.cumsum(d, 0) - d
    pos = torch.empty_like(group)
    pos[order] = torch.arange(len(group), device=risk.device)
    l_frac = (pos - first[group].long()).to(risk.dtype) / d[group]
    ratio = torch.exp(log_sd - log_sr).clamp(max=1.0)
    log_term = log_sr + torch.log1p(-l_frac * ratio)
    return -(ev_risk.sum() - log_term.sum())


def deephit_loss(logits: Tensor, idx: Tensor, event: Tensor, alpha: float = 0.2, sigma: float = 0.1,
                 variant: Literal["pycox", "modalsurv"] = "pycox") -> Tensor:
    """DeepHit single-risk loss.

    ``pycox``: α·NLL + (1−α)·rank with a zero "beyond the last cut" logit appended (pycox
    ``DeepHitSingleLoss``; α=0.2, σ=0.1). ``modalsurv``: the ModalSurv code's loss (no extra class,
    clamped logs, expected-bin ranking without σ, α=0.5, NLL alone when the batch has ≤ 1 event).
    """
    if variant == "pycox":
        return _deephit_pycox(logits, idx, event, alpha, sigma)
    if variant == "modalsurv":
        return _deephit_modalsurv(logits, idx, event, alpha)
    raise ValueError(f"unknown DeepHit variant '{variant}'")


def _deephit_pycox(phi: Tensor, idx: Tensor, event: Tensor, alpha: float, sigma: float) -> Tensor:
    idx = idx.reshape(-1, 1).long()
    event = event.reshape(-1).to(phi.dtype)
    phi = torch.cat([phi, torch.zeros_like(phi[:, :1])], dim=1)
    # NLL of the pmf with a max shift for stability.
    gamma = phi.max(dim=1).values
    cumsum = torch.exp(phi - gamma[:, None]).cumsum(dim=1)
    total = cumsum[:, -1]
    log_pmf = phi.gather(1, idx).reshape(-1) - gamma - torch.log(total.relu() + 1e-7)
    log_surv = torch.log((total - cumsum.gather(1, idx).reshape(-1)).relu() + 1e-7) - torch.log(total.relu() + 1e-7)
    nll = -(event * log_pmf + (1.0 - event) * log_surv).mean()
    # Ranking: R_ij = F_i(κ_i) − F_j(κ_i) over pairs with i an event strictly earlier (or same bin, j censored).
    cdf = torch.softmax(phi, dim=1).cumsum(dim=1)
    f_at_ki = cdf[:, idx.reshape(-1)].T  # [i, j] = F_j(κ_i)
    diff = torch.diagonal(f_at_ki)[:, None] - f_at_ki
    k = idx.reshape(-1)
    ev = event > 0
    rank_mat = ev[:, None] & ((k[:, None] < k[None, :]) | ((k[:, None] == k[None, :]) & ~ev[None, :]))
    rank = (rank_mat.to(phi.dtype) * torch.exp(-diff / sigma)).mean()
    return alpha * nll + (1.0 - alpha) * rank


def _deephit_modalsurv(logits: Tensor, idx: Tensor, event: Tensor, alpha: float) -> Tensor:
    idx = idx.reshape(-1).long()
    ev = event.reshape(-1) > 0
    pmf = torch.softmax(logits, dim=1)
    cdf = pmf.cumsum(dim=1)
    p_k = pmf.gather(1, idx[:, None]).reshape(-1)
    f_k = cdf.gather(1, idx[:, None]).reshape(-1)
    nll_ev = -torch.log(p_k.clamp(min=1e-6))
    nll_cens = -torch.log((1.0 - f_k).clamp(min=1e-4))
    nll = torch.where(ev, nll_ev, nll_cens).mean()
    if int(ev.sum()) <= 1:
        return nll
    expected = (pmf * torch.arange(pmf.shape[1], dtype=pmf.dtype, device=pmf.device)).sum(dim=1)
    pairs = ev[:, None] & (idx[None, :] > idx[:, None])
    if not pairs.any():
        return alpha * nll  # no ordered pair: the ranking term is zero
    rank = torch.exp(-(expected[None, :] - expected[:, None]))[pairs].mean()
    return alpha * nll + (1.0 - alpha) * rank


def bce_loss(logit: Tensor, label: Tensor, pos_weight: float | None = None) -> Tensor:
    """Binary cross-entropy on logits; ``pos_weight`` = n_neg / n_pos balances the classes (Task 2)."""
    logit = logit.reshape(-1)
    label = label.reshape(-1).to(logit.dtype)
    weight = None if pos_weight is None else torch.tensor(float(pos_weight), dtype=logit.dtype, device=logit.device)
    return F.binary_cross_entropy_with_logits(logit, label, pos_weight=weight)


def balanced_pos_weight(labels: np.ndarray) -> float:
    """n_neg / n_pos of a training fold (1.0 when a class is absent)."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    return float(n_neg / n_pos) if n_pos and n_neg else 1.0


def l1_alignment_loss(targets: list[Tensor], predictions: list[Tensor]) -> Tensor:
    """CA-MLIF eq. 6 as CMTA codes it: Σ L1(mean)(target.detach(), prediction) (encoder cls is the target)."""
    losses = [F.l1_loss(p, t.detach()) for t, p in zip(targets, predictions, strict=True)]
    return torch.stack(losses).sum()


# ---------------------------------------------------------------------------------------------------------
# Registry of loss objects: loss(outputs, targets) -> scalar; the network's aux_loss is added when present.


class _LossBase:
    def __init__(self, aux_weight: float = 1.0) -> None:
        self.aux_weight = float(aux_weight)

    def __call__(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        loss = self.main(outputs, targets)
        aux = outputs.get("aux_loss")
        if aux is not None and self.aux_weight:
            loss = loss + self.aux_weight * aux
        return loss

    def main(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:  # pragma: no cover
        raise NotImplementedError


@LOSSES.register("cox")
class CoxLoss(_LossBase):
    """Cox partial likelihood on ``outputs['risk']``."""

    def __init__(self, ties: Ties = "breslow", reduction: Reduction = "events", aux_weight: float = 1.0) -> None:
        super().__init__(aux_weight)
        self.ties, self.reduction = ties, reduction

    def main(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        return cox_ph_loss(outputs["risk"], targets["time"], targets["event"], self.ties, self.reduction)


class _DeepHitLoss(_LossBase):
    variant: str = "pycox"

    def __init__(self, cuts: list[float] | None = None, alpha: float = 0.2, sigma: float = 0.1,
                 aux_weight: float = 1.0) -> None:
        super().__init__(aux_weight)
        self.cuts = None if cuts is None else np.asarray(cuts, dtype=np.float64)
        self.alpha, self.sigma = float(alpha), float(sigma)

    def bins(self, targets: dict[str, Tensor]) -> Tensor:
        if "bin" in targets:
            return targets["bin"].long()
        if self.cuts is None:
            raise ValueError("DeepHit loss needs targets['bin'] or cuts")
        t = targets["time"].detach().cpu().numpy()
        e = targets["event"].detach().cpu().numpy()
        idx = pycox_bin(t, e, self.cuts) if self.variant == "pycox" else modalsurv_bin(t, self.cuts)
        return torch.as_tensor(idx, device=targets["time"].device)

    def main(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        return deephit_loss(outputs["logits"], self.bins(targets), targets["event"], self.alpha, self.sigma,
                            self.variant)  # type: ignore[arg-type]


@LOSSES.register("deephit_pycox")
class PycoxDeepHitLoss(_DeepHitLoss):
    """pycox DeepHit; ``cuts`` are the cut points (``make_cuts``)."""

    variant = "pycox"


@LOSSES.register("deephit_modalsurv")
class ModalSurvDeepHitLoss(_DeepHitLoss):
    """ModalSurv DeepHit; ``cuts`` are the bin edges (``modalsurv_edges``)."""

    variant = "modalsurv"

    def __init__(self, cuts: list[float] | None = None, alpha: float = 0.5, sigma: float = 1.0,
                 aux_weight: float = 1.0) -> None:
        super().__init__(cuts, alpha, sigma, aux_weight)


@LOSSES.register("bce")
class BCELoss(_LossBase):
    """Class-weighted BCE on ``outputs['risk']`` (the logit) against ``targets['label']``."""

    def __init__(self, pos_weight: float | None = None, aux_weight: float = 1.0) -> None:
        super().__init__(aux_weight)
        self.pos_weight = pos_weight

    def main(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        return bce_loss(outputs["risk"], targets["label"], self.pos_weight)
