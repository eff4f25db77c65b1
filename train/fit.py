"""Train one network on one training split: padded mini-batches, modality dropout, early stopping on an inner split.

Why these choices: bags vary in size, so a batch pads them and passes `wsi_mask`; modality dropout (present=False
at random) teaches the network to predict when a modality is missing at inference; the early-stopping split is a
part of the training fold (the caller never passes the reported fold here); a fixed seed, deterministic
algorithms and one thread make the weights byte-identical run to run. The network may live on a GPU (`device:
cuda` in the training config): batches are built on the CPU and moved to the network's device, and what comes
back (risks, losses) is on the CPU.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from chimera_surv.survival.losses import LOSSES, balanced_pos_weight
from chimera_surv.survival.metrics import harrell_c
from train.augment import augment_bag, check_bag_augment
from train.data import CohortArrays, Encoded


def set_determinism(seed: int, threads: int = 1) -> None:
    """Same seed + same thread count → same bits on CPU; on CUDA, cuBLAS needs a fixed workspace for the same
    (torch's reproducibility notes), set here unless the user set it before the first matrix product."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, int(threads)))
    torch.use_deterministic_algorithms(True, warn_only=True)


def score(survival: bool, data: CohortArrays, idx: list[int], risk: np.ndarray) -> float:
    """Harrell's C (survival) or ROC AUC (classification) of `risk` on patients `idx`; NaN when undefined."""
    idx = list(idx)
    if survival:
        return harrell_c(data.event[idx].astype(bool), data.time[idx], risk)
    labels = data.label[idx]
    if labels.min() == labels.max():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, risk))


def collate(enc: Encoded, data: CohortArrays, idx: list[int], modalities: list[str],
            rng: np.random.Generator | None = None, max_patches: int | None = None,
            dropout: dict[str, float] | None = None, bag_augment: dict[str, float] | None = None
            ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A padded batch of patients `idx` (+ targets). With `rng`, patches are subsampled and modalities dropped,
    and bags are augmented when `bag_augment` (train/augment.py) is set."""
    batch: dict[str, torch.Tensor] = {}
    present = {m: enc.present[m][idx].copy() for m in modalities}
    if rng is not None and dropout:
        original = {m: p.copy() for m, p in present.items()}
        for m in modalities:
            p = float(dropout.get(m, 0.0))
            if p > 0:
                present[m] &= rng.random(len(idx)) >= p
        lost_all = ~np.any([present[m] for m in modalities], axis=0)
        for m in modalities:  # a patient never loses every modality
            present[m] |= lost_all & original[m]
    for m in modalities:
        if m == "wsi":
            bags = []
            for j, i in enumerate(idx):
                bag = enc.bags[i]
                if bag is None or len(bag) == 0 or not present["wsi"][j]:
                    bags.append(np.zeros((0, enc.dims["wsi"]), dtype=np.float32))
                    continue
                if max_patches and len(bag) > max_patches:
                    if rng is not None:
                        keep = np.sort(rng.choice(len(bag), max_patches, replace=False))
                    else:  # deterministic evaluation cap: evenly spaced patches
                        keep = np.linspace(0, len(bag) - 1, max_patches).round().astype(int)
                    bag = bag[keep]
                if rng is not None and bag_augment:
                    bag = augment_bag(bag, rng, bag_augment)
                bags.append(bag)
            width = max(1, max(len(b) for b in bags))
            padded = np.zeros((len(idx), width, enc.dims["wsi"]), dtype=np.float32)
            mask = np.zeros((len(idx), width), dtype=bool)
            for j, bag in enumerate(bags):
                padded[j, : len(bag)] = bag
                mask[j, : len(bag)] = True
            batch["wsi"] = torch.from_numpy(padded)
            batch["wsi_mask"] = torch.from_numpy(mask)
            present["wsi"] &= mask.any(axis=1)
        else:
            vectors = enc.vectors[m][idx].copy()
            vectors[~present[m]] = 0.0
            batch[m] = torch.from_numpy(vectors)
        batch[f"{m}_present"] = torch.from_numpy(present[m])
    targets = {"time": torch.from_numpy(np.nan_to_num(data.time[idx]).astype(np.float32)),
               "event": torch.from_numpy(data.event[idx].astype(np.float32)),
               "label": torch.from_numpy(np.clip(data.label[idx], 0, 1).astype(np.float32))}
    return batch, targets


def network_device(network: torch.nn.Module) -> torch.device:
    """Where the network's weights are (every network here has some)."""
    return next(network.parameters()).device


def to_device(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A batch or its targets on `device` (a no-op on the CPU)."""
    return {k: v.to(device, non_blocking=True) for k, v in tensors.items()}


def predict_outputs(network: torch.nn.Module, enc: Encoded, data: CohortArrays, idx: list[int],
                    modalities: list[str], batch_size: int = 64, max_patches: int | None = None,
                    drop: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """`risk` (n,) and `logits` (n, k) for `idx` in eval mode, so any loss (DeepHit needs the logits) can score
    a validation set; modalities in `drop` are marked missing (ablations)."""
    network.eval()
    device = network_device(network)
    out: dict[str, list[torch.Tensor]] = {"risk": [], "logits": []}
    with torch.no_grad():
        for start in range(0, len(idx), batch_size):
            part = list(idx[start:start + batch_size])
            batch, _ = collate(enc, data, part, modalities, None, max_patches)
            for m in drop:
                batch[f"{m}_present"] = torch.zeros_like(batch[f"{m}_present"])
            result = network(to_device(batch, device))
            out["risk"].append(result["risk"].reshape(-1).cpu())
            out["logits"].append(result["logits"].reshape(len(part), -1).cpu())
    return {k: torch.cat(v) if v else torch.zeros(0) for k, v in out.items()}


def predict_risks(network: torch.nn.Module, enc: Encoded, data: CohortArrays, idx: list[int],
                  modalities: list[str], batch_size: int = 64, max_patches: int | None = None,
                  drop: tuple[str, ...] = ()) -> np.ndarray:
    """Raw network risks for `idx` in eval mode (float64 numpy)."""
    risk = predict_outputs(network, enc, data, idx, modalities, batch_size, max_patches, drop)["risk"]
    return risk.double().numpy()


@dataclass
class TrainResult:
    """The best-epoch weights and the curve that chose them."""

    state_dict: dict[str, torch.Tensor]
    best_epoch: int
    best_val: float
    history: list[dict[str, float]] = field(default_factory=list)


def _loss_fn(config: dict[str, Any] | None, survival: bool, train_labels: np.ndarray) -> Any:
    if config:
        return LOSSES.build(config)
    if survival:
        return LOSSES.build({"name": "cox"})
    return LOSSES.build({"name": "bce", "pos_weight": balanced_pos_weight(train_labels)})


def make_loss_and_optimiser(network: torch.nn.Module, data: CohortArrays, train_idx: list[int],
                            tcfg: dict[str, Any], survival: bool) -> tuple[Any, torch.optim.Optimizer]:
    """The loss (configured or the task default) and AdamW, as every training loop here uses them."""
    loss_fn = _loss_fn(tcfg.get("loss"), survival, data.label[list(train_idx)])
    optimiser = torch.optim.AdamW(network.parameters(), lr=float(tcfg["lr"]), weight_decay=float(tcfg["weight_decay"]))
    return loss_fn, optimiser


def train_epoch(network: torch.nn.Module, optimiser: torch.optim.Optimizer, loss_fn: Any, enc: Encoded,
                data: CohortArrays, train_idx: list[int], modalities: list[str], tcfg: dict[str, Any],
                rng: np.random.Generator, survival: bool, after_step: Any = None) -> float:
    """One shuffled pass over `train_idx` (batches of one patient or, for Cox, without an event are skipped);
    returns the mean training loss (NaN when no batch ran). `after_step()` runs after each optimiser step."""
    network.train()
    batch_size = int(tcfg["batch_size"])
    bag_augment = check_bag_augment(tcfg.get("bag_augment"))  # train/augment.py; training batches only
    order = rng.permutation(len(train_idx))
    device = network_device(network)
    losses = []
    for start in range(0, len(order), batch_size):
        part = [train_idx[k] for k in order[start:start + batch_size]]
        if len(part) < 2:
            continue
        batch, targets = collate(enc, data, part, modalities, rng, tcfg.get("max_patches"),
                                 tcfg.get("modality_dropout"), bag_augment)
        if survival and float(targets["event"].sum()) == 0:
            continue
        loss = loss_fn(network(to_device(batch, device)), to_device(targets, device))
        optimiser.zero_grad()
        loss.backward()
        if tcfg.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(network.parameters(), float(tcfg["grad_clip"]))
        optimiser.step()
        if after_step is not None:
            after_step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses)) if losses else float("nan")


def evaluate(network: torch.nn.Module, loss_fn: Any, enc: Encoded, data: CohortArrays, val_idx: list[int],
             modalities: list[str], survival: bool, max_patches: int | None) -> tuple[float, float, np.ndarray]:
    """(validation metric, validation loss, risks) of `val_idx` in eval mode."""
    val_out = predict_outputs(network, enc, data, val_idx, modalities, max_patches=max_patches)
    val_risk = val_out["risk"].double().numpy()
    with torch.no_grad():
        _, val_targets = collate(enc, data, list(val_idx), modalities)
        val_loss = float(loss_fn(val_out, val_targets))
    return score(survival, data, val_idx, val_risk), val_loss, val_risk


def train_network(network: torch.nn.Module, enc: Encoded, data: CohortArrays, train_idx: list[int],
                  val_idx: list[int], modalities: list[str], tcfg: dict[str, Any], seed: int,
                  survival: bool, progress: Any = None) -> TrainResult:
    """AdamW on `train_idx`, early stopping on the C-index/AUC of `val_idx` (ties keep the earlier epoch)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_idx = list(train_idx)
    loss_fn, optimiser = make_loss_and_optimiser(network, data, train_idx, tcfg, survival)
    max_patches = tcfg.get("max_patches")
    best = TrainResult(copy.deepcopy(network.state_dict()), 0, -math.inf)
    best_loss = math.inf
    stale = 0
    for epoch in range(1, int(tcfg["epochs"]) + 1):
        train_loss = train_epoch(network, optimiser, loss_fn, enc, data, train_idx, modalities, tcfg, rng, survival)
        val_metric, val_loss, _ = evaluate(network, loss_fn, enc, data, val_idx, modalities, survival, max_patches)
        history = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_metric": val_metric}
        best.history.append(history)
        # Primary: the validation C-index/AUC; on a tie (common with few events) the lower validation loss.
        metric = val_metric if math.isfinite(val_metric) else -math.inf
        improved = metric > best.best_val + 1e-12 or (abs(metric - best.best_val) <= 1e-12 and val_loss < best_loss)
        if improved:
            best.state_dict = copy.deepcopy(network.state_dict())
            best.best_epoch, best.best_val, best_loss = epoch, metric, val_loss
            stale = 0
        else:
            stale += 1
        if progress is not None:
            progress.set_postfix(epoch=epoch, val=f"{val_metric:.3f}")
        if epoch >= int(tcfg.get("min_epochs", 1)) and stale >= int(tcfg["patience"]):
            break
    network.load_state_dict(best.state_dict)
    network.eval()
    return best
