"""The validation protocol and the exported ensemble, each split resumable from a JSON file in the work folder.

- `cv`: repeated stratified k-fold (event × cohort) for every architecture on the SAME folds; preprocessing is fitted
  on the outer training part; the training length is chosen inside it (train/deep.py: an inner split or inner
  folds + refit, optional seeds and weight averaging); the reported fold is only predicted.
- `holdout`: train on one cohort, test on the other (3A → 3B and back), the same training as `cv`.
- `members`: the exported ensemble: one model (per seed) per fold of a k-fold over the whole cohort, whose
  out-of-fold risks fit the risk standardisation and the calibration (`stopping: holdout` early-stops a member on
  its own held-out fold, which is never reported; `inner_cv` leaves that fold unseen).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from train.data import CohortArrays, encode_fold
from train.deep import DeepFit, fit_deep, network_risks
from train.fit import score
from train.folds import Split, cohort_holdout, member_name, repeated_kfold


@dataclass
class RunContext:
    """What every step needs: the loaded cohort, schema, config and the work folder."""

    data: CohortArrays
    schema: Any
    config: dict[str, Any]
    work: Path
    survival: bool
    config_hash: str


def network_config(arch: dict[str, Any], dims: dict[str, int],
                   survival: bool = True) -> tuple[dict[str, Any], dict[str, int]]:
    """Complete an architecture config with its modalities and input widths (the build_network format)."""
    from train.networks import complete_network_config

    return complete_network_config(arch, dims, survival)


def fold_time_grid(ctx: RunContext, net_cfg: dict[str, Any], split: Split) -> tuple[dict[str, Any], dict[str, Any]]:
    """A DeepHit head's time grid from the split's training times only (train/networks.py: with_time_grid)."""
    from train.networks import with_time_grid

    train = list(split.train)
    return with_time_grid(net_cfg, ctx.config["train"], ctx.data.time[train], ctx.data.event[train])


def arch_modalities(arch: dict[str, Any], available: list[str]) -> list[str]:
    wanted = arch.get("modalities") or available
    return [m for m in available if m in wanted]


def _split_seed(config: dict[str, Any], split: Split, salt: int) -> int:
    return int(config["seed"]) * 1000 + split.repeat * 100 + split.fold + salt


def fit_network(ctx: RunContext, arch: dict[str, Any], split: Split, seed: int,
                val_idx: list[int] | None = None, *, own_modalities: bool = True, device: str | None = None
                ) -> tuple[DeepFit, Any, list[str], dict[str, Any], dict[str, int]]:
    """(fit, encoding, modalities, network config, input widths) of one architecture trained on split.train
    (train/deep.py: stopping on an inner split unless `val_idx` is given, seeds, averaging) on `device` (None: the
    config's). The preprocessing is fitted on the architecture's modalities (`own_modalities`) or on the run's."""
    data, config = ctx.data, ctx.config
    modalities = arch_modalities(arch, data.modalities)
    enc = encode_fold(data, split.train, ctx.schema, {**config, "modalities": modalities} if own_modalities else config)
    dims = {m: enc.dims[m] for m in modalities}
    net_cfg, _ = network_config(arch, dims, ctx.survival)
    net_cfg, tcfg = fold_time_grid(ctx, net_cfg, split)
    fit = fit_deep(net_cfg, enc, data, list(split.train), modalities, tcfg, seed, ctx.survival,
                   threads=config.get("threads", 1), inner_val=config["protocol"]["inner_val"], val_idx=val_idx,
                   device=device or str(config.get("device") or "cpu"))
    return fit, enc, modalities, net_cfg, dims


def run_split(ctx: RunContext, arch_name: str, arch: dict[str, Any], split: Split, salt: int = 0) -> dict[str, Any]:
    """Train one architecture on split.train (fit_network); predict split.test."""
    data, config = ctx.data, ctx.config
    fit, enc, modalities, net_cfg, dims = fit_network(ctx, arch, split, _split_seed(config, split, salt))
    test = list(split.test)
    risk, _ = network_risks(fit, enc, data, list(split.train), test, modalities, config["train"].get("max_patches"))
    record = {"arch": arch_name, "split": split.name, "repeat": split.repeat, "fold": split.fold,
              "test": test, "case_ids": [data.case_ids[i] for i in test], "risk": [float(r) for r in risk],
              "metric": score(ctx.survival, data, test, risk), "best_epoch": fit.best_epoch,
              "inner_val_metric": fit.best_val, "history": fit.history, "modalities": modalities,
              "n_train": fit.n_train, "n_inner_val": fit.n_val, "stopping": fit.stopping, "seeds": len(fit.seeds),
              "config_hash": ctx.config_hash, "arch_config": arch}
    return record, fit.networks[0], enc, net_cfg, dims


def evaluate_split(ctx: RunContext, arch_name: str, arch: Any, split: Split, salt: int = 0) -> dict[str, Any]:
    """A split's record: classical families and `auto` (train/selection/) or a network (run_split)."""
    from train.selection import is_classical, run_classical_split

    if is_classical(arch):
        return run_classical_split(ctx, arch_name, arch, split, _split_seed(ctx.config, split, salt))
    return run_split(ctx, arch_name, arch, split, salt)[0]


def _cached(path: Path, ctx: RunContext, arch: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """A finished split's record when it was made by the same config (and architecture)."""
    if path.is_file():
        record = json.loads(path.read_text())
        if record.get("config_hash") == ctx.config_hash and (arch is None or record.get("arch_config") == arch):
            return record
    return None


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # Key order is kept: a network config's modality order decides the fusion's input order.
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    tmp.replace(path)


def architectures(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The exported model first (named 'model'), then the comparison architectures, each completed by
    train/networks.py `resolve_architectures` (main model's modality settings < seed preset < entry keys)."""
    from train.networks import resolve_architectures

    return resolve_architectures(config)


def cv_splits(ctx: RunContext) -> list[Split]:
    protocol = ctx.config["protocol"]
    return repeated_kfold(ctx.data.outcome, ctx.data.cohorts, int(protocol["folds"]), int(protocol["repeats"]),
                          int(ctx.config["seed"]))


def run_cv(ctx: RunContext) -> list[dict[str, Any]]:
    """Every architecture on the same repeated folds (resumable per split)."""
    jobs = [(name, arch, split) for name, arch in architectures(ctx.config).items() for split in cv_splits(ctx)]
    return _evaluate_resumable(ctx, jobs, "cv", "cv", salt=0)


def run_holdout(ctx: RunContext) -> list[dict[str, Any]]:
    """Cohort-held-out results for every architecture (empty when the cohort has a single site)."""
    if not ctx.config["protocol"].get("cohort_holdout", True):
        return []
    splits = cohort_holdout(ctx.data.cohorts)
    jobs = [(name, arch, split) for name, arch in architectures(ctx.config).items() for split in splits]
    return _evaluate_resumable(ctx, jobs, "cohort-held-out", "holdout", salt=7)


def _evaluate_resumable(ctx: RunContext, jobs: list[tuple[str, Any, Split]], step: str, folder: str,
                        salt: int) -> list[dict[str, Any]]:
    """evaluate_split for each (architecture, split) job, read from `<work>/<folder>/<arch>/<split>.json` when a
    record for this config and data is there, written there when it was fitted now."""
    records = []
    reused = 0
    for name, arch, split in tqdm(jobs, desc=step, unit="fit"):
        path = ctx.work / folder / name / f"{split.name}.json"
        record = _cached(path, ctx, arch)
        reused += record is not None
        if record is None:
            record = evaluate_split(ctx, name, arch, split, salt=salt)
            _write_json(path, record)
        records.append(record)
    say_reused(step, reused, len(jobs), ctx.work / folder)
    return records


def say_reused(step: str, reused: int, total: int, folder: Path) -> None:
    """One line after a resumable loop, so that a fast progress bar over cached results is not read as a refit."""
    if reused:
        print(f"{step}: {reused} of {total} read from {folder} (already fitted for this config and data; "
              f"{total - reused} fitted now)")


def member_splits(ctx: RunContext) -> list[Split]:
    protocol = ctx.config["protocol"]
    k = int(protocol.get("members", protocol["folds"]))
    return repeated_kfold(ctx.data.outcome, ctx.data.cohorts, k, int(protocol.get("member_repeats", 1)),
                          int(ctx.config["seed"]) + 10_000)


def fit_members(ctx: RunContext) -> list[dict[str, Any]]:
    """Train the exported ensemble (resumable per member); each member's weights go to members/<file>.safetensors.
    With `train.seeds: n`, every split gives n members (one per seed, `member<k>s<j>`), averaged like the others."""
    from train.selection import is_classical

    arch = ctx.config["model"]
    if is_classical(arch):
        return fit_classical_members(ctx, arch)
    n_seeds = int(ctx.config["train"].get("seeds", 1))
    out = []
    splits = member_splits(ctx)
    reused = 0
    for split in tqdm(splits, desc="fit members", unit="member"):
        paths = [ctx.work / "members" / f"{_member_file(split.name, j)}.json" for j in range(n_seeds)]
        records = [_cached(path, ctx) for path in paths]
        if any(r is None or not p.with_suffix(".safetensors").is_file() for r, p in zip(records, paths)):
            records, networks = _run_member(ctx, arch, split)
            for record, network in zip(records, networks):
                save_network_member(ctx, record, network)
        else:
            reused += 1
        out.extend(records)
    say_reused("fit members", reused, len(splits), ctx.work / "members")
    return out


def _member_file(split_name: str, seed_index: int) -> str:
    return split_name if seed_index == 0 else f"{split_name}s{seed_index}"


def fit_classical_members(ctx: RunContext, arch: Any) -> list[dict[str, Any]]:
    """`auto`/classical members: each member chooses on its own training part's inner splits and is refitted
    there, so its held-out fold's risks come from a procedure (selection included) that never saw those patients;
    those risks give the ensemble's out-of-fold figure and fit the calibration. The bundle averages the members'
    own choices (each recorded in its member file)."""
    from safetensors.numpy import save_file as save_arrays

    from train.selection import _choice_summary, classical_member, select
    from train.selection.networks import is_network, network_members

    out = []
    splits = member_splits(ctx)
    reused = 0
    for split in tqdm(splits, desc="fit members", unit="member"):
        path = ctx.work / "members" / f"{split.name}.json"
        weights = path.with_suffix(".safetensors")
        record = _cached(path, ctx)
        if record is not None and record.get("kind") == "network":  # a chosen network: its seed members too
            records = [_cached(path.with_name(f"{f}.json"), ctx) for f in record.get("seed_files", [])]
            if all(r is not None for r in records) and weights.is_file():
                out.extend([record, *records])
                reused += 1
                continue
            record = None
        reused += record is not None and weights.is_file()
        if record is None or not weights.is_file():
            seed = _split_seed(ctx.config, split, 50)
            choice = select(ctx, arch, list(split.train), seed + 20_000)
            if is_network(choice["chosen"]):
                records, networks = network_members(ctx, choice, split, seed)
                records[0]["seed_files"] = [r["file"] for r in records[1:]]
                for r, network in zip(records, networks):
                    save_network_member(ctx, {**r, "auto": _choice_summary(choice)}, network)
                out.extend({**r, "auto": _choice_summary(choice)} for r in records)
                continue
            record, arrays = classical_member(ctx, arch, choice, split, seed)
            weights.parent.mkdir(parents=True, exist_ok=True)
            save_arrays({k: np.ascontiguousarray(v) for k, v in sorted(arrays.items())}, str(weights))
            _write_json(path, record)
        out.append(record)
    say_reused("fit members", reused, len(splits), ctx.work / "members")
    return out


def spread_ratio(members: list[dict[str, Any]]) -> float:
    """SD over patients of the shipped risk (the mean of the members' standardised risks) over the SD of one
    out-of-fold risk. A patient's out-of-fold risk averages one member per member repeat (`protocol.member_repeats`;
    one member when there is one repeat), so the reference is the mean SD of such a one-per-repeat average (the
    members of fold f of every repeat). The calibration is fitted on out-of-fold risks; dividing the shipped
    average by this ratio puts it on their spread, so its months do not shrink toward the median. Uses no
    outcome; 1 when a member did not record its risk on every patient (networks)."""
    if not members or any("risk_all" not in r for r in members):
        return 1.0
    z = np.asarray([(np.asarray(r["risk_all"]) - r["risk_shift"]) / r["risk_scale"] for r in members])
    by_fold: dict[str, list[int]] = {}
    for i, record in enumerate(members):
        by_fold.setdefault(_fold_group(str(record.get("split", "")), i), []).append(i)
    reference = float(np.mean([np.std(z[rows].mean(axis=0)) for rows in by_fold.values()]))
    ratio = float(np.std(z.mean(axis=0))) / reference if reference > 1e-12 else 1.0
    return ratio if np.isfinite(ratio) and ratio > 1e-6 else 1.0


def _fold_group(split_name: str, position: int) -> str:
    """`f<fold>` for a member split named `r<repeat>f<fold>` (folds.repeated_kfold): the members whose average is
    one out-of-fold risk; any other name is a group of its own."""
    import re

    match = re.fullmatch(r"r\d+(f\d+)", split_name)
    return match.group(1) if match else f"member{position}"


def _run_member(ctx: RunContext, arch: dict[str, Any], split: Split) -> tuple[list[dict[str, Any]], list[Any]]:
    """One record and network per seed. `stopping: holdout` early-stops on the member's own held-out fold (never
    reported); `inner_cv` chooses the epoch count inside split.train, so the held-out fold stays unseen."""
    fit, enc, modalities, net_cfg, dims = fit_network(ctx, arch, split, _split_seed(ctx.config, split, 50),
                                                      val_idx=list(split.test), own_modalities=False)
    return member_records(ctx, fit, enc, modalities, net_cfg, dims, split), fit.networks


def member_records(ctx: RunContext, fit: DeepFit, enc: Any, modalities: list[str], net_cfg: dict[str, Any],
                   dims: dict[str, int], split: Split) -> list[dict[str, Any]]:
    """One exported-member record per seed network of `fit`: its risks on split.test (the out-of-fold risks that
    fit the calibration) and its shift/scale on split.train."""
    records = []
    for j, network in enumerate(fit.networks):
        one = DeepFit([network], [fit.seeds[j]], fit.best_epoch, fit.best_val)
        oof_risk, [(shift, scale)] = network_risks(one, enc, ctx.data, list(split.train), list(split.test),
                                                   modalities, ctx.config["train"].get("max_patches"))
        records.append({"name": member_name(split, j), "split": split.name, "file": _member_file(split.name, j),
                        "seed": fit.seeds[j], "oof": list(split.test), "oof_risk": [float(r) for r in oof_risk],
                        "risk_shift": shift, "risk_scale": scale, "network": net_cfg, "input_dims": dims,
                        "modalities": modalities,
                        "preprocessing": {m: s for m, s in enc.preprocessing.items() if m in modalities},
                        "best_epoch": fit.best_epoch, "stopping": fit.stopping, "history": fit.history,
                        "config_hash": ctx.config_hash})
    return records


def save_network_member(ctx: RunContext, record: dict[str, Any], network: torch.nn.Module) -> None:
    """A network member's weights (members/<file>.safetensors) and its record (members/<file>.json)."""
    path = ctx.work / "members" / f"{record['file']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in sorted(network.state_dict().items())}
    save_file(state, str(path.with_suffix(".safetensors")))
    _write_json(path, record)


def member_state(ctx: RunContext, record: dict[str, Any]) -> dict[str, torch.Tensor]:
    return load_file(str(ctx.work / "members" / f"{record.get('file', record['split'])}.safetensors"))


def oof_standardised(ctx: RunContext, members: list[dict[str, Any]]) -> np.ndarray:
    """Each patient's risk from the member(s) that did not train on it, on the shared (standardised) scale; the
    seed members of one split are averaged, as the bundle averages them."""
    return oof_mean(len(ctx.data), members)


def oof_mean(n_patients: int, members: list[dict[str, Any]]) -> np.ndarray:
    """oof_standardised from the member records alone (NaN for a patient no member left out): what a benchmark
    reading a finished work folder recomputes."""
    total = np.zeros(n_patients)
    count = np.zeros(n_patients)
    for record in members:
        values = (np.asarray(record["oof_risk"]) - record["risk_shift"]) / record["risk_scale"]
        total[record["oof"]] += values
        count[record["oof"]] += 1
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
