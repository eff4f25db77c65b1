"""What a run's cached results were computed on: per patient, a digest of its labels, clinical JSON, RNA and the
names and sizes of its image, feature and slide-embedding files.

Why: every cached result (CV splits, members, bundle, audit) is keyed by the run hash, which is the config hash
combined with these digests, so a changed label, patient or file recomputes what depends on it instead of
silently reusing results of the old data. The digests are kept in `<work>/data_fingerprint.json`, so a rerun can
say what changed and re-extract only the patients whose slides or MRI changed. Image files are fingerprinted by
name and size, not by content or modification time: reading terabytes of slides would cost minutes, and copying
a cohort to another disk must not throw away hours of extracted features.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE = "data_fingerprint.json"
PARTS = ("labels", "clinical", "rna", "images", "embeddings")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file(path: Path | None) -> list[Any] | None:
    """(name, size in bytes) of an input file; None where there is none, -1 where it is named but absent."""
    if path is None:
        return None
    path = Path(path)
    return [path.name, path.stat().st_size if path.is_file() else -1]


def _images(patient: Any) -> list[Any]:
    slides = [[_file(s.wsi), _file(s.mask), _file(getattr(s, "features", None))] for s in patient.slides]
    mri = patient.mri
    volumes = None if mri is None else [_file(getattr(mri, k, None)) for k in ("t2", "adc", "hbv", "mask", "features")]
    return [slides, volumes, [_file(p) for p in getattr(patient, "features_h5", [])]]


@dataclass
class DataFingerprint:
    """Per part (labels, clinical, rna, images, embeddings = slide-encoder vector files), per patient id, a 16-hex
    digest; `genes` is the RNA gene list's."""

    parts: dict[str, dict[str, str]] = field(default_factory=dict)
    genes: str = ""

    @classmethod
    def of(cls, patients: list[Any], genes: list[str]) -> DataFingerprint:
        parts: dict[str, dict[str, str]] = {name: {} for name in PARTS}
        for p in patients:
            parts["labels"][p.case_id] = _digest([p.cohort, p.time, p.event, p.label, p.extra])
            parts["clinical"][p.case_id] = _digest(p.clinical)
            parts["rna"][p.case_id] = _digest(p.rna)
            parts["images"][p.case_id] = _digest(_images(p))
            parts["embeddings"][p.case_id] = _digest([_file(f) for f in getattr(p, "slide_embeddings", [])])
        return cls(parts, _digest(list(genes)))

    def run_hash(self, config_hash: str) -> str:
        """The key of every cached result: the config hash and the data it was computed on."""
        return _digest([config_hash, self.genes, {k: sorted(v.items()) for k, v in self.parts.items()}])

    def to_dict(self) -> dict[str, Any]:
        return {"genes": self.genes, "parts": self.parts}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DataFingerprint:
        return cls({k: dict(v) for k, v in doc["parts"].items()}, str(doc.get("genes", "")))

    def changed_images(self, old: DataFingerprint) -> list[str]:
        """Patients present in both whose slide/MRI/feature files differ (their extracted features are stale)."""
        before = old.parts.get("images", {})
        return sorted(i for i, d in self.parts["images"].items() if i in before and before[i] != d)

    def changes(self, old: DataFingerprint) -> list[str]:
        """What differs from `old`, in words: patients added/removed, then each part with its changed patients."""
        ids, before = set(self.parts["labels"]), set(old.parts.get("labels", {}))
        words = []
        if ids - before:
            words.append(f"{len(ids - before)} patient(s) added ({_examples(ids - before)})")
        if before - ids:
            words.append(f"{len(before - ids)} patient(s) removed ({_examples(before - ids)})")
        for part in PARTS:
            prev = old.parts.get(part, {})
            diff = {i for i, d in self.parts[part].items() if i in prev and prev[i] != d}
            if diff:
                words.append(f"{part} of {len(diff)} patient(s) ({_examples(diff)})")
        if old.genes != self.genes:
            words.append("the RNA gene list")
        return words


def _examples(ids: set[str], n: int = 3) -> str:
    first = sorted(ids)[:n]
    return ", ".join(first) + (", …" if len(ids) > n else "")


def load(work: Path) -> DataFingerprint | None:
    """The fingerprint recorded by the last run in `work`; None when there is none (or it is unreadable)."""
    path = Path(work) / FILE
    try:
        return DataFingerprint.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def save(work: Path, fingerprint: DataFingerprint) -> None:
    path = Path(work) / FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(fingerprint.to_dict(), indent=0, sort_keys=True))
    tmp.replace(path)
