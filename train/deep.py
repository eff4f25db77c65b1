"""Deep models that suit small cohorts: how many epochs, how many seeds, which weights.

Why: early stopping on an inner split of ~30 patients (a handful of events) is a coin flip; many folds stopped at
epoch 1-4 (issue 9). Three remedies, each a `train` config key, combinable:
- `stopping: inner_cv`: the epoch count is chosen on the mean curve of `inner_folds` inner folds of the training part
  (all folds train in lockstep; the mean validation C-index/AUC, smoothed over `smooth` epochs, decides), then one
  network is refitted on the WHOLE training part for that many epochs. `stopping: holdout` is the old path: early
  stopping on one inner split (or on the split the caller gives).
- `seeds: n`: n networks from n initialisations, their standardised risks averaged.
- `average: swa|ema`: the weights of the last `average_last` epochs averaged (SWA), or an exponential moving
  average per epoch (`ema_decay`); the inner-CV curve is measured on the averaged weights, so the chosen epoch
  count is the one the averaged model is best at.
Inner folds reuse the outer training part's fitted preprocessing (label-free), as the holdout split always did.
`device` (the training config's, `cpu` or `cuda[:k]`) is where the networks train; they come back on the CPU, where
the bundle writer and the risk predictions expect them.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from train.data import CohortArrays, Encoded
from train.fit import (
    evaluate,
    make_loss_and_optimiser,
    predict_risks,
    set_determinism,
    train_epoch,
    train_network,
)
from train.folds import inner_split, repeated_kfold

STOPPING = ("holdout", "inner_cv")
AVERAGING = ("none", "swa", "ema")


@dataclass(frozen=True)
class DeepSettings:
    """The `train` keys of this module, validated."""

    stopping: str = "holdout"
    inner_folds: int = 3
    smooth: int = 3
    seeds: int = 1
    average: str = "none"
    average_last: int = 5
    ema_decay: float = 0.8

    @classmethod
    def from_config(cls, tcfg: dict[str, Any]) -> DeepSettings:
        s = cls(stopping=str(tcfg.get("stopping", cls.stopping)), inner_folds=int(tcfg.get("inner_folds", 3)),
                smooth=int(tcfg.get("smooth", 3)), seeds=int(tcfg.get("seeds", 1)),
                average=str(tcfg.get("average") or "none"), average_last=int(tcfg.get("average_last", 5)),
                ema_decay=float(tcfg.get("ema_decay", 0.8)))
        if s.stopping not in STOPPING:
            raise ValueError(f"train.stopping must be one of {STOPPING}, got {s.stopping!r}")
        if s.average not in AVERAGING:
            raise ValueError(f"train.average must be one of {AVERAGING}, got {s.average!r}")
        if s.average != "none" and s.stopping != "inner_cv":
            raise ValueError("train.average (swa/ema) needs train.stopping: inner_cv (a fixed epoch count)")
        if s.seeds < 1 or s.inner_folds < 2 or s.smooth < 1 or s.average_last < 1 or not 0 < s.ema_decay < 1:
            raise ValueError(f"invalid deep training settings {s}")
        return s


class WeightAverager:
    """SWA over the last `last` epochs (a ring buffer of state dicts) or a per-epoch EMA; non-float buffers
    (counters) take the latest value."""

    def __init__(self, kind: str, last: int = 5, decay: float = 0.8) -> None:
        self.kind, self.decay = kind, decay
        self.window: deque[dict[str, torch.Tensor]] = deque(maxlen=last)
        self.ema: dict[str, torch.Tensor] | None = None

    def update(self, network: torch.nn.Module) -> None:
        state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        if self.kind == "swa":
            self.window.append(state)
        elif self.kind == "ema":
            if self.ema is None:
                self.ema = state
            else:
                for k, v in state.items():
                    self.ema[k] = self.decay * self.ema[k] + (1 - self.decay) * v if v.is_floating_point() else v

    def state(self) -> dict[str, torch.Tensor] | None:
        """The averaged weights, or None when nothing is averaged."""
        if self.kind == "ema":
            return self.ema
        if self.kind == "swa" and self.window:
            latest = self.window[-1]
            return {k: torch.stack([s[k] for s in self.window]).mean(0) if v.is_floating_point() else v
                    for k, v in latest.items()}
        return None


@dataclass
class DeepFit:
    """The trained networks (one per seed, eval mode) and how their training length was chosen."""

    networks: list[torch.nn.Module]
    seeds: list[int]
    best_epoch: int
    best_val: float
    history: list[dict[str, float]] = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0
    stopping: str = "holdout"


def seed_list(seed: int, n: int) -> list[int]:
    """Seed k of a split; seed 0 is the split's own seed, so `seeds: 1` reproduces a single-network run."""
    return [seed + 7919 * k for k in range(n)]


def fit_deep(net_cfg: dict[str, Any], enc: Encoded, data: CohortArrays, train_idx: list[int], modalities: list[str],
             tcfg: dict[str, Any], seed: int, survival: bool, *, threads: int = 1, inner_val: float = 0.2,
             val_idx: list[int] | None = None, device: str = "cpu") -> DeepFit:
    """Train `seeds` networks on `train_idx` as `tcfg` says (module docstring). `val_idx` (holdout only) replaces
    the inner split as the early-stopping set; it is never part of the training patients."""
    from chimera_surv.models import build_network

    settings = DeepSettings.from_config(tcfg)
    train_idx = list(train_idx)
    seeds = seed_list(seed, settings.seeds)
    networks = []
    if settings.stopping == "holdout":
        if val_idx is None:
            fit_idx, val_idx = inner_split(train_idx, data.outcome, data.cohorts, inner_val, seed)
        else:
            fit_idx = train_idx
        results = []
        for s in seeds:
            set_determinism(s, threads)
            network = build_network(net_cfg).to(device)
            results.append(train_network(network, enc, data, fit_idx, list(val_idx), modalities, tcfg, s, survival))
            networks.append(network.cpu())
        first = results[0]
        return DeepFit(networks, seeds, first.best_epoch, first.best_val, first.history, len(fit_idx), len(val_idx),
                       "holdout")
    epochs, best_val, curve, n_val = choose_epochs(net_cfg, enc, data, train_idx, modalities, tcfg, seed, survival,
                                                   settings, threads, device)
    for s in seeds:
        networks.append(refit(net_cfg, enc, data, train_idx, modalities, tcfg, s, survival, settings, epochs,
                              threads, device).cpu())
    return DeepFit(networks, seeds, epochs, best_val, curve, len(train_idx), n_val, "inner_cv")


def _inner_folds(train_idx: list[int], data: CohortArrays, k: int, seed: int) -> list[tuple[list[int], list[int]]]:
    outcome = [data.outcome[i] for i in train_idx]
    cohorts = [data.cohorts[i] for i in train_idx]
    k = max(2, min(k, sum(outcome), len(outcome) - sum(outcome)))  # every inner fold needs both outcomes
    folds = repeated_kfold(outcome, cohorts, k, 1, seed + 31)
    return [([train_idx[i] for i in f.train], [train_idx[i] for i in f.test]) for f in folds]


def choose_epochs(net_cfg: dict[str, Any], enc: Encoded, data: CohortArrays, train_idx: list[int],
                  modalities: list[str], tcfg: dict[str, Any], seed: int, survival: bool, settings: DeepSettings,
                  threads: int = 1, device: str = "cpu") -> tuple[int, float, list[dict[str, float]], int]:
    """(epoch count, its smoothed mean inner metric, the mean inner curve, inner validation size per fold).

    The inner folds train in lockstep; training stops once the smoothed mean metric has not improved for
    `patience` epochs (after `min_epochs`). Ties keep the lower mean validation loss, then the earlier epoch."""
    from chimera_surv.models import build_network

    folds = _inner_folds(train_idx, data, settings.inner_folds, seed)
    max_patches = tcfg.get("max_patches")
    states = []
    for j, (fit_idx, _) in enumerate(folds):
        fold_seed = seed + 101 * (j + 1)
        set_determinism(fold_seed, threads)
        network = build_network(net_cfg).to(device)
        loss_fn, optimiser = make_loss_and_optimiser(network, data, fit_idx, tcfg, survival)
        states.append((network, loss_fn, optimiser, np.random.default_rng(fold_seed),
                       WeightAverager(settings.average, settings.average_last, settings.ema_decay)))
    curve: list[dict[str, float]] = []
    best = (-math.inf, math.inf, 0)  # (smoothed metric, smoothed loss, epoch)
    for epoch in range(1, int(tcfg["epochs"]) + 1):
        metrics, losses, train_losses = [], [], []
        for (fit_idx, val_idx), (network, loss_fn, optimiser, rng, averager) in zip(folds, states):
            train_losses.append(train_epoch(network, optimiser, loss_fn, enc, data, fit_idx, modalities, tcfg, rng,
                                            survival))
            averager.update(network)
            scored = _averaged_copy(network, averager)
            metric, loss, _ = evaluate(scored, loss_fn, enc, data, val_idx, modalities, survival, max_patches)
            metrics.append(metric)
            losses.append(loss)
        curve.append({"epoch": epoch, "train_loss": _nanmean(train_losses), "val_loss": _nanmean(losses),
                      "val_metric": _nanmean(metrics)})
        window = curve[-settings.smooth:]
        smooth_metric = _nanmean([c["val_metric"] for c in window])
        smooth_loss = _nanmean([c["val_loss"] for c in window])
        metric = smooth_metric if math.isfinite(smooth_metric) else -math.inf
        loss = smooth_loss if math.isfinite(smooth_loss) else math.inf
        if epoch >= int(tcfg.get("min_epochs", 1)) and (
                metric > best[0] + 1e-12 or (abs(metric - best[0]) <= 1e-12 and loss < best[1])):
            best = (metric, loss, epoch)
        if epoch >= int(tcfg.get("min_epochs", 1)) and epoch - best[2] >= int(tcfg["patience"]):
            break
    chosen = best[2] or len(curve)
    return chosen, float(best[0]), curve, len(folds[0][1])


def refit(net_cfg: dict[str, Any], enc: Encoded, data: CohortArrays, train_idx: list[int], modalities: list[str],
          tcfg: dict[str, Any], seed: int, survival: bool, settings: DeepSettings, epochs: int,
          threads: int = 1, device: str = "cpu") -> torch.nn.Module:
    """One network trained on all of `train_idx` for exactly `epochs` epochs (averaged weights when configured)."""
    from chimera_surv.models import build_network

    set_determinism(seed, threads)
    network = build_network(net_cfg).to(device)
    rng = np.random.default_rng(seed)
    loss_fn, optimiser = make_loss_and_optimiser(network, data, train_idx, tcfg, survival)
    averager = WeightAverager(settings.average, settings.average_last, settings.ema_decay)
    for _ in range(epochs):
        train_epoch(network, optimiser, loss_fn, enc, data, train_idx, modalities, tcfg, rng, survival)
        averager.update(network)
    averaged = averager.state()
    if averaged is not None:
        network.load_state_dict(averaged)
    network.eval()
    return network


def _averaged_copy(network: torch.nn.Module, averager: WeightAverager) -> torch.nn.Module:
    averaged = averager.state()
    if averaged is None:
        return network
    scored = copy.deepcopy(network)
    scored.load_state_dict(averaged)
    return scored


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def network_risks(fit: DeepFit, enc: Encoded, data: CohortArrays, train_idx: list[int], idx: list[int],
                  modalities: list[str], max_patches: int | None) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Risks of `idx` from `fit` and each network's (shift, scale) on its training patients. One network: its raw
    risk; several: the mean of each network's standardised risk (their raw scales differ)."""
    raw = [predict_risks(n, enc, data, list(idx), modalities, max_patches=max_patches) for n in fit.networks]
    scales = []
    for network in fit.networks:
        train_risk = predict_risks(network, enc, data, list(train_idx), modalities, max_patches=max_patches)
        scales.append((float(np.mean(train_risk)), float(np.std(train_risk)) or 1.0))
    if len(raw) == 1:
        return raw[0], scales
    return np.mean([(r - s) / c for r, (s, c) in zip(raw, scales)], axis=0), scales
