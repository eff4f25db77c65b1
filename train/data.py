"""Cohort arrays in memory and their per-fold encoding.

`CohortArrays` holds raw, unfitted inputs (slide bags from the feature cache, parsed clinical records, RNA and MRI
matrices with NaN for missing). `encode_fold` fits the preprocessing on the training indices only and encodes
every patient with it, so the reported fold never informs a mean, a category list or a PCA basis.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chimera_surv.preprocess import ClinicalEncoder, RNANormaliser, Standardiser

VECTOR_MODALITIES = ("mri", "clinical", "rna", "slide_embedding")
RNA_SCALES = ("counts", "log")
log = logging.getLogger("train.data")


def rna_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """`preprocess.rna` → RNANormaliser arguments. `scale` declares the input: `counts` (raw counts / TPM: log1p
    applied) or `log` (already log-transformed: no log1p). An explicit `log1p` must agree with it."""
    opts = dict(options or {})
    scale = opts.pop("scale", "counts")
    if scale not in RNA_SCALES:
        raise ValueError(f"preprocess.rna.scale must be one of {RNA_SCALES}, got {scale!r}")
    log1p = scale == "counts"
    if "log1p" in opts and bool(opts["log1p"]) != log1p:
        raise ValueError(f"preprocess.rna.log1p: {opts['log1p']} contradicts scale: {scale} "
                         "(counts → log1p applied, log → not); set only `scale`")
    opts["log1p"] = log1p
    return opts


def check_rna_scale(matrix: np.ndarray | None, scale: str) -> str | None:
    """A warning (logged and returned) when the RNA values do not look like the declared scale.

    Counts/TPM are ≥ 0 with a long tail (maxima in the thousands); log values are small and may be negative. So:
    declared `counts` but negative values or a 99th percentile under 25 → probably already logged (log1p would be
    applied twice); declared `log` but a maximum over 100 → probably counts."""
    if matrix is None:
        return None
    values = np.asarray(matrix, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    message = None
    p99, low, high = float(np.percentile(values, 99)), float(values.min()), float(values.max())
    if scale == "counts" and (low < 0 or p99 < 25):
        message = (f"RNA values look already log-transformed (min {low:.3g}, 99th percentile {p99:.3g}) but "
                   "preprocess.rna.scale is counts, so log1p is applied again; set scale: log if they are")
    elif scale == "log" and high > 100:
        message = (f"RNA values look like counts (max {high:.3g}) but preprocess.rna.scale is log, so no log1p is "
                   "applied; set scale: counts if they are raw counts or TPM")
    if message:
        log.warning(message)
    return message


@dataclass
class CohortArrays:
    """Everything the models see, before any fitted transform."""

    case_ids: list[str]
    cohorts: list[str]
    time: np.ndarray  # float64 (n,), NaN for a classification task
    event: np.ndarray  # int64 (n,)
    label: np.ndarray  # int64 (n,), -1 for a survival task
    modalities: list[str]
    bags: list[np.ndarray | None] = field(default_factory=list)  # (N_i, D) float32 or None
    records: list[Any] = field(default_factory=list)  # ClinicalRecord or None
    rna: np.ndarray | None = None  # (n, G) float32, NaN rows for missing
    mri: np.ndarray | None = None  # (n, D) float32, NaN rows for missing
    mri_names: list[str] = field(default_factory=list)
    slide_embedding: np.ndarray | None = None  # (n, D) float32, the mean slide-encoder vector; NaN rows missing
    slide_embedding_names: list[str] = field(default_factory=list)  # `<encoder>:<i>`: the recipe the bundle keeps
    extra: list[dict[str, str]] = field(default_factory=list)
    clinical_missing: list[dict[str, Any]] = field(default_factory=list)  # per feature (train/clinical_missing.py)

    def __len__(self) -> int:
        return len(self.case_ids)

    @property
    def outcome(self) -> list[int]:
        """What folds are stratified on: the event (survival) or the class (Task 2)."""
        return [int(v) for v in (self.event if self.label[0] < 0 else self.label)]

    def raw_present(self, modality: str) -> np.ndarray:
        n = len(self)
        if modality == "wsi":
            return np.array([b is not None and len(b) > 0 for b in self.bags], dtype=bool)
        if modality == "clinical":
            return np.array([r is not None and r.n_present() > 0 for r in self.records], dtype=bool)
        matrix = {"rna": self.rna, "mri": self.mri}.get(modality, getattr(self, modality, None))
        if matrix is None:
            return np.zeros(n, dtype=bool)
        return np.isfinite(matrix).any(axis=1)


@dataclass
class Encoded:
    """One fold's encoding of the whole cohort: vectors per modality, presence flags, bags and widths."""

    vectors: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    bags: list[np.ndarray | None]
    dims: dict[str, int]
    preprocessing: dict[str, dict[str, Any]]


def encode_fold(data: CohortArrays, train_idx: list[int] | tuple[int, ...], schema: Any,
                config: dict[str, Any]) -> Encoded:
    """Fit each modality's transform on `train_idx` patients that have the modality, encode everyone."""
    train_idx = list(train_idx)
    vectors: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    dims: dict[str, int] = {}
    state: dict[str, dict[str, Any]] = {}
    options = config.get("preprocess", {})
    for modality in data.modalities:
        present[modality] = data.raw_present(modality)
        fit_idx = [i for i in train_idx if present[modality][i]]
        if modality == "wsi":
            widths = {b.shape[1] for b in data.bags if b is not None and len(b)}
            if len(widths) != 1:
                raise ValueError(f"slide bags have inconsistent or no feature widths: {sorted(widths)}")
            dims["wsi"] = widths.pop()
            continue
        if not fit_idx:
            raise ValueError(f"no training patient has {modality} data; drop it from `modalities`")
        if modality == "clinical":
            encoder = ClinicalEncoder(**options.get("clinical", {})).fit([data.records[i] for i in fit_idx], schema)
            vectors[modality] = encoder.transform([r if r is not None else _empty_record(schema)
                                                   for r in data.records])
        elif modality == "rna":
            encoder = RNANormaliser(**rna_options(options.get("rna"))).fit(data.rna[fit_idx])
            vectors[modality] = encoder.transform(data.rna)
        elif modality == "mri":
            encoder = Standardiser(**options.get("mri", {})).fit(data.mri[fit_idx], data.mri_names or None)
            vectors[modality] = encoder.transform(data.mri)
        elif modality == "slide_embedding":
            encoder = Standardiser().fit(data.slide_embedding[fit_idx], data.slide_embedding_names or None)
            vectors[modality] = encoder.transform(data.slide_embedding)
        else:
            raise ValueError(f"unknown modality '{modality}'")
        vectors[modality] = np.asarray(vectors[modality], dtype=np.float32)
        dims[modality] = int(vectors[modality].shape[1])
        state[modality] = encoder.to_dict()
    return Encoded(vectors=vectors, present=present, bags=data.bags, dims=dims, preprocessing=state)


def _empty_record(schema: Any) -> Any:
    from chimera_surv.readers.clinical import parse_clinical

    return parse_clinical(None, schema)
