"""Step `extract`: slide bags and MRI feature vectors per patient, computed once and cached in the work folder.

Why a per-patient cache on top of features.py's per-slide cache: `fit`/`cv` then read one small safetensors file
per patient and never touch a slide; a run stopped mid-way resumes at the first patient without a file.

Sharded: under `torchrun` (RANK/WORLD_SIZE in the environment) each rank takes its own share of the patients,
balanced by slide count and decided the same way on every rank, so no collective is needed. Every file is written
atomically (temporary name, then rename), done patients are skipped, and each rank writes a manifest of what it
computed, reused and failed (`<work>/manifest/extract-rank<r>.json`); a failing patient is recorded and the rank
goes on. Ranks on one node use `cuda:<LOCAL_RANK>` when GPUs are present.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from train.cohort import Patient

log = logging.getLogger("train.extract")


def bag_path(work: Path, case_id: str) -> Path:
    return work / "bags" / f"{case_id}.safetensors"


def mri_path(work: Path, case_id: str) -> Path:
    return work / "mri" / f"{case_id}.json"


def shard() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside torchrun."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def assign(patients: list[Patient], world: int) -> list[list[Patient]]:
    """Patients per rank: most slides first onto the least-loaded rank (ties: case id, rank). Deterministic."""
    loads = [0] * world
    shares: list[list[Patient]] = [[] for _ in range(world)]
    for patient in sorted(patients, key=lambda p: (-max(1, len(p.slides)), p.case_id)):
        rank = min(range(world), key=lambda r: (loads[r], r))
        shares[rank].append(patient)
        loads[rank] += max(1, len(patient.slides))
    return shares


def manifest_path(work: Path, rank: int) -> Path:
    return work / "manifest" / f"extract-rank{rank}.json"


def _atomic_write(target: Path, write: Any) -> None:
    """`write(tmp_path)` then rename: a reader never sees half a file, a killed run leaves no bogus bag."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    write(tmp)
    tmp.replace(target)


def _device(config: dict[str, Any], world: int, local_rank: int) -> str | None:
    import torch

    if config.get("device"):
        return config["device"]
    return f"cuda:{local_rank}" if world > 1 and torch.cuda.is_available() else None


def extract_all(patients: list[Patient], config: dict[str, Any], work: Path, modalities: list[str],
                encoder_root: Path | None) -> dict[str, int]:
    """Compute this rank's missing bags / MRI vectors; returns counts of computed, reused and failed patients."""
    rank, world, local_rank = shard()
    mine = assign(patients, world)[rank] if world > 1 else patients
    device = _device(config, world, local_rank)
    counts = {"computed": 0, "reused": 0, "failed": 0}
    failures: dict[str, str] = {}
    no_patches: dict[str, str] = {}  # encoded, but every slide was skipped (corrupt, no tissue): why
    earlier = manifest_path(work, rank)  # a reused empty bag keeps the reason its first extraction gave
    known = (json.loads(earlier.read_text()).get("no_patches") or {}) if earlier.is_file() else {}
    if "wsi" in modalities:
        from chimera_surv.encoders.base import load_encoder
        from chimera_surv.features import FeatureRecipe, extract_case_bag

        recipe = FeatureRecipe.from_dict(config["recipe"])
        encoder = None
        for patient in tqdm(mine, desc=f"extract slides (rank {rank}/{world})", unit="case"):
            target = bag_path(work, patient.case_id)
            if target.is_file():
                counts["reused"] += 1
                if patient.case_id in known:
                    no_patches[patient.case_id] = known[patient.case_id]
                continue
            if patient.features_h5 or not patient.slides:  # precomputed `.h5` (table route) or no slide at all
                from train.h5features import import_case

                features, coords = import_case(patient.features_h5, recipe)  # a recipe mismatch names the file
                tensors = {"features": features, "coords": coords}
                _atomic_write(target, lambda tmp, t=tensors: save_file(t, str(tmp)))
                counts["computed"] += 1
                continue
            try:
                if encoder is None:
                    encoder = load_encoder(recipe.encoder, encoder_root, device, weights=recipe.weights)
                bag, issues = extract_case_bag(patient.slides, recipe, encoder_root, cache_dir=work / "slide_cache",
                                               device=device, encoder=encoder)
            except Exception as err:  # one bad patient is recorded, the shard goes on
                if encoder is None:
                    raise  # no encoder at all: every patient would fail the same way
                failures[patient.case_id] = f"{type(err).__name__}: {err}"
                counts["failed"] += 1
                log.warning("%s: extraction failed: %s", patient.case_id, failures[patient.case_id])
                continue
            for issue in issues:
                log.info("%s: %s", patient.case_id, issue)
            if len(bag.features) == 0:
                no_patches[patient.case_id] = "; ".join(issues) or "no tissue patch"
            tensors = {"features": np.ascontiguousarray(bag.features, dtype=np.float32),
                       "coords": np.ascontiguousarray(bag.coords, dtype=np.int64)}
            _atomic_write(target, lambda tmp, t=tensors: save_file(t, str(tmp)))
            counts["computed"] += 1
    if "mri" in modalities:
        try:  # the contract names features.py; the implementation lives in mri_features.py
            from chimera_surv.features import mri_features
        except ImportError:
            from chimera_surv.mri_features import mri_features

        for patient in tqdm(mine, desc=f"extract MRI (rank {rank}/{world})", unit="case"):
            target = mri_path(work, patient.case_id)
            if target.is_file():
                counts["reused"] += 1
                continue
            record: dict[str, Any] = {"values": None, "names": [], "error": None}
            if patient.mri is not None:
                try:
                    values, names = mri_features(patient.mri, kind=config.get("mri_kind", "measurements"),
                                                 encoder_root=encoder_root)
                    record.update(values=[float(v) for v in np.asarray(values, dtype=np.float64)],
                                  names=list(names))
                except Exception as err:  # noqa: BLE001 - a broken MRI is a missing modality, not a failed run
                    record["error"] = f"{type(err).__name__}: {err}"
                    counts["failed"] += 1
            text = json.dumps(record, allow_nan=True)
            _atomic_write(target, lambda tmp, t=text: tmp.write_text(t))
            counts["computed"] += 1
    manifest = {"rank": rank, "world": world, "run": os.environ.get("TORCHELASTIC_RUN_ID", ""), "patients": sorted(p.case_id for p in mine), "counts": counts,
                "failed": failures, "no_patches": no_patches}
    _atomic_write(manifest_path(work, rank), lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)))
    return counts


def wait_for_shards(work: Path, world: int, timeout_s: float = 7 * 24 * 3600, poll_s: float = 5.0
                    ) -> list[dict[str, Any]]:
    """Rank 0, before the later steps: wait until every rank's manifest exists (files only, no collective)."""
    deadline = time.monotonic() + timeout_s
    while True:
        paths = [manifest_path(work, r) for r in range(world)]
        done = [json.loads(p.read_text()) for p in paths if p.is_file()]
        run = os.environ.get("TORCHELASTIC_RUN_ID", "")
        if len(done) == world and all(m.get("run", "") == run for m in done):  # not a previous run's manifests
            return done
        if time.monotonic() > deadline:
            missing = [str(p) for p in paths]
            raise TimeoutError(f"extract shards did not finish: {missing}")
        time.sleep(poll_s)


def recorded_failures(work: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(case id → why its slides could not be encoded, case id → why they gave no patch), from every rank's
    manifest of the last extract step."""
    failed: dict[str, str] = {}
    no_patches: dict[str, str] = {}
    for path in sorted((work / "manifest").glob("extract-rank*.json")):
        manifest = json.loads(path.read_text())
        failed.update(manifest.get("failed") or {})
        no_patches.update(manifest.get("no_patches") or {})
    return failed, no_patches


def load_bag(work: Path, case_id: str, failures: dict[str, str] | None = None) -> np.ndarray | None:
    """The patient's patch features; None when it has none, or when its extraction failed (`failures`, recorded
    by the extract step): such a patient trains as one without slides, as at inference."""
    target = bag_path(work, case_id)
    if not target.is_file():
        if failures and case_id in failures:
            return None
        raise FileNotFoundError(f"no slide features for {case_id}: run the `extract` step first")
    features = load_file(str(target))["features"]
    return features if len(features) else None


def load_mri(work: Path, case_id: str) -> tuple[np.ndarray | None, list[str]]:
    target = mri_path(work, case_id)
    if not target.is_file():
        raise FileNotFoundError(f"no MRI features for {case_id}: run the `extract` step first")
    record = json.loads(target.read_text())
    if record["values"] is None:
        return None, []
    return np.asarray(record["values"], dtype=np.float32), list(record["names"])
