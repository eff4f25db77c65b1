"""What one patient (one grand-challenge job) holds once its sockets are resolved to files and values."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chimera_surv.tasks import Task


@dataclass
class SlideInput:
    """One WSI and its tissue mask (either may be missing; the reader decides what that means)."""

    index: int
    wsi: Path | None
    mask: Path | None
    name: str | None = None  # the platform's `image.name`, kept for logs
    features: Path | None = None  # precomputed patch features (`.h5`, Trident/CLAM) used instead of decoding `wsi`


@dataclass
class MRIInput:
    """Task 1 MRI: T2, ADC, HBV and the prostate mask on the T2 grid."""

    t2: Path | None = None
    adc: Path | None = None
    hbv: Path | None = None
    mask: Path | None = None
    features: Path | None = None  # a precomputed MRI feature vector (.json/.h5/.npy) used instead of the volumes

    def present(self) -> list[str]:
        return [k for k in ("t2", "adc", "hbv", "mask") if getattr(self, k) is not None]


@dataclass
class Case:
    """A resolved case. Raw JSON values are kept unparsed; `issues` lists every problem met so far."""

    task: Task
    slides: list[SlideInput] = field(default_factory=list)
    mri: MRIInput | None = None
    clinical: Any = None
    rna: Any = None
    issues: list[str] = field(default_factory=list)
    slide_embeddings: list[Path] = field(default_factory=list)  # slide-encoder vectors (.h5/.npy/.json), one per slide
    case_id: str | None = None
