"""The three CHIMERA task specifications: how sockets are recognised and what is written.

Sockets are matched by slug *pattern*, never by the exact interface tuple: the organisers' algorithm
template and evaluation container disagree on the Task 1 socket set (chimera-spec.md §1.2, §9).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

OutputKind = Literal["months", "probability"]
Role = Literal["wsi", "wsi_mask", "mri_t2", "mri_adc", "mri_hbv", "mri_mask", "clinical", "rna"]


@dataclass(frozen=True)
class Task:
    """One CHIMERA task: its id, output file and the modalities a case may carry."""

    id: int
    name: str
    output_file: str
    output_kind: OutputKind
    modalities: tuple[str, ...]
    clinical_schema: str  # file name under resources/schemas/
    fallback_value: float  # last-resort output: training-cohort median months or prevalence

    @property
    def is_survival(self) -> bool:
        return self.output_kind == "months"


TASKS: dict[int, Task] = {
    1: Task(
        id=1,
        name="prostate-bcr",
        output_file="time-to-biochemical-recurrence-for-prostate-cancer-months.json",
        output_kind="months",
        modalities=("wsi", "mri", "clinical"),
        clinical_schema="task1.json",
        # BCR median follow-up is not public; the KM median is not reached in most RP cohorts.
        fallback_value=60.0,
    ),
    2: Task(
        id=2,
        name="bladder-brs",
        output_file="brs-probability.json",
        output_kind="probability",
        modalities=("wsi", "clinical"),
        clinical_schema="task2.json",
        fallback_value=0.31,  # training prevalence 57/182 BRS3 (chimera-spec.md §1.3)
    ),
    3: Task(
        id=3,
        name="nmibc-recurrence",
        output_file="likelihood-of-bladder-cancer-recurrence.json",
        output_kind="months",
        modalities=("wsi", "rna", "clinical"),
        clinical_schema="task3.json",
        fallback_value=66.5,  # median Time of the 176 public Task 3 patients (chimera-spec.md §7)
    ),
}

# (role, pattern). The first match wins, so masks are tested before the images they belong to.
# A pattern's group "k" is the slide index for Task 1's multi-slide sockets.
SOCKET_PATTERNS: list[tuple[Role, re.Pattern[str]]] = [
    ("mri_mask", re.compile(r"^prostate-tissue-mask-for-axial-t2-prostate-mri$")),
    ("wsi_mask", re.compile(r"^prostatectomy-tissue-mask$")),
    ("wsi_mask", re.compile(r"^prostatectomy-tissue-whole-slide-image-(?P<k>\d+)-2$")),
    ("wsi", re.compile(r"^prostatectomy-tissue-whole-slide-image(?:-(?P<k>\d+))?$")),
    ("wsi_mask", re.compile(r"^tissue-mask$")),
    ("wsi", re.compile(r"^bladder-cancer-tissue-biopsy-whole-slide-image$")),
    ("mri_t2", re.compile(r"^axial-t2-prostate-mri$")),
    ("mri_adc", re.compile(r"^axial-adc-prostate-mri$")),
    ("mri_hbv", re.compile(r"^transverse-hbv-prostate-mri$")),
    ("rna", re.compile(r"rna-seq")),
    ("clinical", re.compile(r"clinical-data")),
]


def classify_slug(slug: str) -> tuple[Role, int] | None:
    """Return (role, slide index) for a known socket slug, or None for an unknown one."""
    for role, pattern in SOCKET_PATTERNS:
        match = pattern.search(slug)
        if match:
            k = match.groupdict().get("k")
            return role, int(k) if k else 0
    return None


def identify_task(slugs: list[str]) -> Task:
    """Pick the task from the set of slugs: prostate → 1; RNA or a recurrence socket → 3; bladder → 2."""
    joined = " ".join(slugs)
    if "prostate" in joined:
        return TASKS[1]
    if "rna" in joined or "recurrence" in joined:
        return TASKS[3]
    if "bladder" in joined or "tissue-mask" in joined:
        return TASKS[2]
    raise ValueError(f"cannot identify the CHIMERA task from sockets {sorted(slugs)}")
