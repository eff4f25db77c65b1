"""Load a training cohort laid out as the CHIMERA training buckets (chimera-spec.md §2) into patient records.

Layouts recognised (found by file-name pattern under the root, never by a fixed folder depth):
- Task 1: `clinical_data/<pid>.json`, `pathology/images/<pid>/<pid>_<scan>.tif` + `<pid>_<scan>_tissue.tif`,
  `radiology/images/<pid>/<pid>_<scan>_{t2w,adc,hbv,mask}.mha`;
- Tasks 2/3: `<id>/<id>_HE.tif`, `<id>_HE_mask.tif`, `<id>_CD.json` (+ `<id>_RNA.json` for Task 3).
Slide embeddings (modality slide_embedding): `<id>.<ext>` / `<id>_<slide>.<ext>` in any `slide_embeddings/` folder
under the root, or in the folder `cohort.slide_embeddings` names. The name rules are chimera_surv/readers/layout.py's,
shared with `predict_cohort`.
Labels come from the clinical JSON keys the schema names (`labels`), or from a CSV (`labels_csv`) whose columns
the config names. The cohort (3A/3B, 2A/2B) comes from a CSV column or a regex on the case id.
A cohort given as a table instead (`cohort.table`) is read by train/table.py into the same `Patient` records.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chimera_surv.case import MRIInput, SlideInput
from chimera_surv.readers.layout import clinical_paths, embeddings_under, index_files, mri_for, slides_for


@dataclass
class Patient:
    """One training patient: where its inputs are, its raw JSON and its label."""

    case_id: str
    cohort: str
    slides: list[SlideInput] = field(default_factory=list)
    mri: MRIInput | None = None
    clinical: Any = None
    rna: Any = None
    time: float | None = None  # months (survival tasks)
    event: int | None = None  # 1 = event (survival tasks)
    label: int | None = None  # 1 = positive class (Task 2)
    extra: dict[str, str] = field(default_factory=dict)  # other CSV columns (e.g. a synthetic latent risk)
    features_h5: list[Path] = field(default_factory=list)  # precomputed slide features (table route, train/table.py)
    slide_embeddings: list[Path] = field(default_factory=list)  # slide-encoder vectors, one file per slide


@dataclass
class LabelSpec:
    """Where labels live: the clinical JSON keys the schema names, or a CSV with the columns the config names."""

    schema: Any  # ClinicalSchema: its `labels` name the JSON keys (time/event or target/positive)
    csv_path: Path | None = None
    csv_columns: dict[str, str] = field(default_factory=dict)  # case_id/time/event/label/cohort → column
    positive: tuple[str, ...] = ("1", "1.0")  # CSV label values meaning the positive class
    explicit: tuple[str, ...] = ()  # the roles the config named itself (their columns must exist)

    @classmethod
    def from_config(cls, schema: Any, config: dict[str, Any] | None, base: Path) -> LabelSpec:
        config = dict(config or {})
        spec = cls(schema=schema)
        spec.positive = tuple(str(v) for v in config.get("positive", schema.labels.get("positive", []))) or (
            "1", "1.0")
        if config.get("csv"):
            path = Path(config["csv"])
            spec.csv_path = path if path.is_absolute() else base / path
            columns = dict(config.get("columns") or {})
            # A role set to null is not in the CSV (its labels come from the clinical JSON).
            spec.csv_columns = {k: v for k, v in {"case_id": "case_id", "time": "time", "event": "event",
                                                  "label": "label", "cohort": "cohort", **columns}.items() if v}
            spec.explicit = tuple(k for k, v in columns.items() if v)
        return spec


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _unwrap(raw: Any) -> Any:
    return raw[0] if isinstance(raw, list) and len(raw) == 1 else raw


def _is_true(text: str) -> bool:
    text = str(text).strip().lower()
    try:
        return float(text) >= 0.5
    except ValueError:
        return text in ("yes", "true")


def _read_csv(spec: LabelSpec, survival: bool) -> dict[str, dict[str, str]]:
    """case id → row. A column the config names, the id column, or the task's label columns (time + event, or
    label) missing from the header is an error naming it, never a silent fall back to the clinical JSON."""
    with open(spec.csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    required = {"case_id", *spec.explicit, *(("time", "event") if survival else ("label",))}
    for role in sorted(required):
        column = spec.csv_columns.get(role)
        if column is not None and column not in header:
            raise ValueError(f"labels CSV {spec.csv_path}: no column {column!r} for `{role}` (header: {header}); "
                             f"name it in cohort.labels.columns.{role}, or set it to null to read it from the "
                             f"clinical JSON")
    key = spec.csv_columns["case_id"]
    return {row[key]: row for row in rows}


def _apply_labels(patient: Patient, raw: Any, row: dict[str, str] | None, spec: LabelSpec) -> None:
    """CSV columns win; otherwise the schema's label keys in the clinical JSON (read_labels)."""
    from chimera_surv.readers.clinical import read_labels

    cols = spec.csv_columns
    if row is not None:
        value = row.get(cols.get("time", ""), "")
        patient.time = float(value) if value not in ("", None) else None
        value = row.get(cols.get("event", ""), "")
        patient.event = int(_is_true(value)) if value not in ("", None) else None
        value = row.get(cols.get("label", ""), "")
        if value not in ("", None):
            patient.label = 1 if value in spec.positive else int(_is_true(value))
        patient.extra = {k: v for k, v in row.items() if k not in cols.values()}
    if raw is not None:
        labels = read_labels(raw, spec.schema)
        if patient.time is None and labels.get("time") is not None:
            patient.time = float(labels["time"])
        if patient.event is None and labels.get("event") is not None:
            patient.event = int(labels["event"])
        if patient.label is None and labels.get("target") is not None:
            patient.label = int(labels["target"])


def load_cohort(root: Path | str, labels: LabelSpec, *, survival: bool, cohort_regex: str = r"^([0-9]+[A-Za-z])_",
                default_cohort: str = "all", slide_embeddings: Path | None = None) -> list[Patient]:
    """All labelled patients under `root`, sorted by case id. Unlabelled patients are dropped with a reason.

    Slide embeddings come from the `slide_embeddings` folder when one is given (`cohort.slide_embeddings`, named by
    id as in the table route), else from `slide_embeddings/` folders under the root (readers/layout.py)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"cohort root {root} does not exist")
    clinical = clinical_paths(root)
    rows = _read_csv(labels, survival) if labels.csv_path else {}
    ids = sorted(set(clinical) | set(rows))
    files = index_files(root, ids)
    embeddings = _embeddings(root, ids, slide_embeddings)
    pattern = re.compile(cohort_regex) if cohort_regex else None
    patients = []
    for case_id in ids:
        own = files.get(case_id, [])
        raw = _unwrap(_read_json(clinical[case_id])) if case_id in clinical else None
        rna_files = [p for p in own if p.name.endswith("_RNA.json")]
        row = rows.get(case_id)
        cohort = (row or {}).get(labels.csv_columns.get("cohort", "cohort")) if row else None
        if not cohort and pattern is not None:
            match = pattern.search(case_id)
            cohort = match.group(1) if match else None
        patient = Patient(case_id=case_id, cohort=str(cohort or default_cohort), slides=slides_for(own),
                          mri=mri_for(own), clinical=raw, rna=_read_json(rna_files[0]) if rna_files else None,
                          slide_embeddings=embeddings.get(case_id, []))
        _apply_labels(patient, raw, row, labels)
        patients.append(patient)
    if survival:
        kept = [p for p in patients if p.time is not None and p.event is not None]
    else:
        kept = [p for p in patients if p.label is not None]
    if not kept:
        raise ValueError(f"no labelled patient under {root} ({len(patients)} found; check the label keys/CSV)")
    return kept


def _embeddings(root: Path, ids: list[str], folder: Path | None) -> dict[str, list[Path]]:
    """id → slide-embedding files: the configured folder read as the table route reads it, else the root's own."""
    if folder is None:
        return embeddings_under(root, ids)
    from train.table import _features_h5  # imported here: train/table.py imports this module

    return _features_h5(folder, ids, "slide_embeddings")


def gene_list_from_cohort(patients: list[Patient]) -> list[str]:
    """The sorted gene keys of the first patient with RNA (how the CHIMERA gene_order.json was built)."""
    for patient in patients:
        if isinstance(patient.rna, dict):
            return sorted(patient.rna)
    raise ValueError("no patient has RNA data, so no gene list can be derived")
