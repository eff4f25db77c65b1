"""Networks as `auto` options: `auto.networks` names architectures (a seed preset or encoders + fusion + head, as a
`compare` entry) that are trained on the SAME inner splits as the classical families and scored the same way.

Why beside the classical families and not instead of them: with ~100 patients a network's inner score is noisy, so
it enters as one option `network:<name>` under the selection rule (select.py): it replaces the default equal
ensemble only when its paired inner gain clears `switch_se` corrected standard errors. The exported model is
whatever that rule chose; a chosen network is retrained per CV training part and per exported member, stopping on
an inner split of that training part (never the member's held-out fold, whose risks fit the calibration).
Each inner fit is cached in `<work>/auto_inner/` under a hash of (config, architecture, split, seed), so an
interrupted run resumes where it stopped; the fits not cached run on `network_jobs` joblib worker processes. Off
by default (`networks: {}`): each network adds (inner splits + 1) trainings per training part.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

PREFIX = "network:"


def network_options(settings: dict[str, Any], config: dict[str, Any], modalities: list[str]) -> dict[str, Any]:
    """`network:<name>` → the completed architecture, for each `auto.networks` entry that has a modality to use.
    An entry's `modalities` default to those `auto` may use (auto.modalities, else the run's)."""
    from train.networks import resolve_architecture

    allowed = [m for m in modalities if not settings.get("modalities") or m in settings["modalities"]]
    out = {}
    for name, entry in (settings.get("networks") or {}).items():
        arch = resolve_architecture(entry, {"modalities": allowed}, f"auto.networks.{name}")
        if [m for m in allowed if m in (arch.get("modalities") or allowed)]:
            out[PREFIX + name] = arch
    return out


def is_network(option: str) -> bool:
    return option.startswith(PREFIX)


def _fit(ctx: Any, arch: dict[str, Any], train: list[int], seed: int, device: str | None = None
         ) -> tuple[Any, Any, list[str], dict[str, Any], dict[str, int]]:
    """Networks (one per `train.seeds`) trained on `train`, stopping on an inner split of it (protocol.fit_network),
    on `device` (None: the config's)."""
    from train.folds import Split
    from train.protocol import fit_network

    return fit_network(ctx, arch, Split("inner", tuple(train), ()), seed, device=device)


def task_device(device: str, task: int, n_gpus: int) -> str:
    """Inner fit `task`'s device: a bare `cuda` spreads the fits over the visible GPUs in turn (the joblib workers
    then train on different GPUs); `cuda:k`, `cpu` or a single GPU stay as they are."""
    return f"cuda:{task % n_gpus}" if device == "cuda" and n_gpus > 1 else device


def standardised_risk(ctx: Any, fit: Any, enc: Any, modalities: list[str], train: list[int],
                      idx: list[int]) -> np.ndarray:
    """The risk of `idx` z-scored with the mean and SD of the network's risk on its training patients (several
    seeds: the mean of their z-scores), as the classical parts are scored."""
    from train.deep import network_risks

    risk, scales = network_risks(fit, enc, ctx.data, train, idx, modalities, ctx.config["train"].get("max_patches"))
    if len(scales) == 1:
        shift, scale = scales[0]
        return (np.asarray(risk) - shift) / scale
    return np.asarray(risk)


def inner_network_risks(ctx: Any, splits: list[tuple[list[int], list[int]]], options: dict[str, Any],
                        seed: int, n_jobs: int = 1) -> dict[str, list[np.ndarray]]:
    """`network:<name>#0` → per inner split, the z-scored validation risk (cached per split). The fits not in the
    cache run on `n_jobs` joblib (loky) worker processes (`auto.network_jobs`); each fit seeds itself from
    (seed + split index), so the risks do not depend on n_jobs or on the order the workers finish."""
    from joblib import Parallel, delayed

    paths = {}
    for name, arch in options.items():
        for s, (tr, va) in enumerate(splits):
            key = json.dumps([ctx.config_hash, arch, sorted(tr), sorted(va), seed + s], sort_keys=True, default=str)
            digest = hashlib.sha1(key.encode()).hexdigest()[:20]
            paths[name, s] = ctx.work / "auto_inner" / name.replace(":", "_") / f"{digest}.json"
    todo = [(name, s) for (name, s), path in paths.items() if not path.is_file()]
    device = str(ctx.config.get("device") or "cpu")
    n_gpus = _visible_gpus() if device == "cuda" else 0
    Parallel(n_jobs=max(1, min(int(n_jobs), len(todo) or 1)))(
        delayed(_inner_fit)(ctx, name, options[name], list(splits[s][0]), list(splits[s][1]), seed + s, paths[name, s],
                            task_device(device, k, n_gpus))
        for k, (name, s) in enumerate(todo))
    out: dict[str, list[np.ndarray]] = {}
    for (name, s), path in paths.items():  # options outer, splits inner: the order `paths` was filled in
        out.setdefault(f"{name}#0", []).append(np.asarray(json.loads(path.read_text())["z"], dtype=float))
    return out


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def _inner_fit(ctx: Any, name: str, arch: dict[str, Any], train: list[int], val: list[int], seed: int,
               path: Path, device: str | None = None) -> None:
    """One inner fit (a joblib task): the network trained on `train` (on `device`), `val` scored z-scored, written
    to its cache file as soon as it is done (an atomic replace), so an interrupted run keeps every finished fit."""
    from train.protocol import _write_json

    fit, enc, mods, _, _ = _fit(ctx, arch, train, seed, device)
    z = standardised_risk(ctx, fit, enc, mods, train, val)
    _write_json(path, {"option": name, "n_train": len(train), "z": [float(v) for v in z]})


def network_split_record(ctx: Any, arch_name: str, arch: Any, choice: dict[str, Any], split: Any,
                         seed: int) -> dict[str, Any]:
    """A CV / cohort-held-out split whose inner choice was a network: retrained on split.train, split.test predicted."""
    from train.fit import score

    train, test = list(split.train), list(split.test)
    fit, enc, mods, _, _ = _fit(ctx, choice["networks"][choice["chosen"]], train, seed)
    risk = standardised_risk(ctx, fit, enc, mods, train, test)
    data = ctx.data
    return {"arch": arch_name, "split": split.name, "repeat": split.repeat, "fold": split.fold, "test": test,
            "case_ids": [data.case_ids[i] for i in test], "risk": [float(r) for r in risk],
            "metric": score(ctx.survival, data, test, risk), "best_epoch": fit.best_epoch,
            "inner_val_metric": choice["scores"][choice["chosen"]], "history": fit.history, "modalities": mods,
            "n_train": fit.n_train, "n_inner_val": fit.n_val, "stopping": fit.stopping, "config_hash": ctx.config_hash,
            "arch_config": arch}


def network_members(ctx: Any, choice: dict[str, Any], split: Any, seed: int) -> tuple[list[dict[str, Any]], list[Any]]:
    """Exported member(s) when a member's inner choice was a network: one record and network per seed, stopped on an
    inner split of split.train; the held-out fold's risks (which fit the calibration) stay unseen."""
    from train.protocol import fit_network, member_records

    fit, enc, mods, net_cfg, dims = fit_network(ctx, choice["networks"][choice["chosen"]], split, seed)
    records = [{**r, "kind": "network"} for r in member_records(ctx, fit, enc, mods, net_cfg, dims, split)]
    return records, fit.networks
