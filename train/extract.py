"""Step `extract`: slide bags and MRI feature vectors per patient, computed once and cached in the work folder.

Why a per-patient cache on top of features.py's per-slide cache: `fit`/`cv` then read one small safetensors file
per patient and never touch a slide; a run stopped mid-way resumes at the first patient without a file.
"""

from __future__ import annotations

import json
import logging
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


def extract_all(patients: list[Patient], config: dict[str, Any], work: Path, modalities: list[str],
                encoder_root: Path | None) -> dict[str, int]:
    """Compute missing bags / MRI vectors; returns counts of computed and reused patients."""
    counts = {"computed": 0, "reused": 0, "failed": 0}
    if "wsi" in modalities:
        from chimera_surv.encoders.base import load_encoder
        from chimera_surv.features import FeatureRecipe, extract_case_bag

        recipe = FeatureRecipe.from_dict(config["recipe"])
        encoder = None
        for patient in tqdm(patients, desc="extract slides", unit="case"):
            target = bag_path(work, patient.case_id)
            if target.is_file():
                counts["reused"] += 1
                continue
            if encoder is None:
                encoder = load_encoder(recipe.encoder, encoder_root, config.get("device"), weights=recipe.weights)
            bag, issues = extract_case_bag(patient.slides, recipe, encoder_root, cache_dir=work / "slide_cache",
                                           device=config.get("device"), encoder=encoder)
            for issue in issues:
                log.info("%s: %s", patient.case_id, issue)
            target.parent.mkdir(parents=True, exist_ok=True)
            save_file({"features": np.ascontiguousarray(bag.features, dtype=np.float32),
                       "coords": np.ascontiguousarray(bag.coords, dtype=np.int64)}, str(target))
            counts["computed"] += 1
    if "mri" in modalities:
        try:  # the contract names features.py; the implementation lives in mri_features.py
            from chimera_surv.features import mri_features
        except ImportError:
            from chimera_surv.mri_features import mri_features

        for patient in tqdm(patients, desc="extract MRI", unit="case"):
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
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(record, allow_nan=True))
            counts["computed"] += 1
    return counts


def load_bag(work: Path, case_id: str) -> np.ndarray | None:
    target = bag_path(work, case_id)
    if not target.is_file():
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
