"""The three CHIMERA task specifications: how sockets are recognised and what is written.

Sockets are matched by exact slug, one by one, never by the exact interface tuple (the organisers' algorithm
template and evaluation container disagree on the Task 1 socket set, chimera-spec.md §1.2, §9) and never by a word
inside a slug (an extra `internal-qc-note` socket must not look like RNA).
"""

from __future__ import annotations

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

# Each task's own sockets, by exact slug (chimera-spec.md §1.2-1.4): slug → (role, slide index). A socket is known
# only through this table, never by a word its slug contains, so an extra socket cannot change the task.
_T1_SOCKETS: dict[str, tuple[Role, int]] = {
    "axial-t2-prostate-mri": ("mri_t2", 0),
    "axial-adc-prostate-mri": ("mri_adc", 0),
    "transverse-hbv-prostate-mri": ("mri_hbv", 0),
    "prostate-tissue-mask-for-axial-t2-prostate-mri": ("mri_mask", 0),
    "prostatectomy-tissue-whole-slide-image": ("wsi", 0),
    "prostatectomy-tissue-mask": ("wsi_mask", 0),
    "chimera-clinical-data-of-prostate-cancer-patients": ("clinical", 0),
}
for _k in range(1, 10):  # interfaces interf1..interf9: slide k and its mask `<slide slug>-2`
    _T1_SOCKETS[f"prostatectomy-tissue-whole-slide-image-{_k}"] = ("wsi", _k)
    _T1_SOCKETS[f"prostatectomy-tissue-whole-slide-image-{_k}-2"] = ("wsi_mask", _k)
_BLADDER_SLIDE: dict[str, tuple[Role, int]] = {
    "bladder-cancer-tissue-biopsy-whole-slide-image": ("wsi", 0),
    "tissue-mask": ("wsi_mask", 0),
}
TASK_SOCKETS: dict[int, dict[str, tuple[Role, int]]] = {
    1: _T1_SOCKETS,
    2: {**_BLADDER_SLIDE, "chimera-clinical-data-of-bladder-cancer-patients": ("clinical", 0)},
    3: {**_BLADDER_SLIDE, "bulk-rna-seq-bladder-cancer": ("rna", 0),
        "chimera-clinical-data-of-bladder-cancer-recurrence": ("clinical", 0)},
}
# The sockets every interface of a task has (Task 1: the seven base sockets; slides 1..9 are optional).
REQUIRED_SOCKETS: dict[int, frozenset[str]] = {
    1: frozenset(slug for slug, (_, k) in _T1_SOCKETS.items() if k == 0),
    2: frozenset(TASK_SOCKETS[2]),
    3: frozenset(TASK_SOCKETS[3]),
}
# Sockets of the obsolete Task 1 evaluator (chimera-spec.md §1.2 caveat): recognised, never read, never evidence.
OBSOLETE_SOCKETS = frozenset({"axial-dwi-prostate-mri", "transverse-dce-prostate-mri"})


def classify_slug(slug: str, task: Task | None = None) -> tuple[Role, int] | None:
    """(role, slide index) of an exact socket slug of `task` (of any task when None); None when unknown."""
    tables = [TASK_SOCKETS[task.id]] if task is not None else [TASK_SOCKETS[t] for t in sorted(TASK_SOCKETS)]
    for table in tables:
        if slug in table:
            return table[slug]
    return None


def owner_tasks(slug: str) -> list[int]:
    """The ids of the tasks that define this socket slug (two for the shared bladder slide sockets)."""
    return [t for t in sorted(TASK_SOCKETS) if slug in TASK_SOCKETS[t]]


def _evidence(task_id: int, present: set[str]) -> tuple[float, float, int]:
    """How strongly the present sockets point at a task: (share of its exclusive required sockets present,
    share of its required sockets present, number of required sockets present)."""
    required = REQUIRED_SOCKETS[task_id]
    others = set().union(*(TASK_SOCKETS[t] for t in TASK_SOCKETS if t != task_id))
    exclusive = required - others
    return (len(exclusive & present) / len(exclusive), len(required & present) / len(required),
            len(required & present))


def choose_task(slugs: list[str]) -> tuple[Task, str | None]:
    """The task the sockets belong to, and a note for the log when sockets of several tasks were present.

    Only exact slugs of a task count. When sockets of two tasks are present, the required sockets decide: first
    the share of the task's own (not shared) required sockets present, then the share of all its required sockets,
    then their number (a complete Task 3 set contains the shared slide sockets of Task 2), then the lower id.
    Raises ValueError when no socket of any task is present.
    """
    present = set(slugs)
    candidates = [t for t in sorted(TASK_SOCKETS) if present & set(TASK_SOCKETS[t])]
    if not candidates:
        raise ValueError(f"cannot identify the CHIMERA task from sockets {sorted(present)}")
    ranked = sorted(candidates, key=lambda t: (*_evidence(t, present), -t), reverse=True)
    chosen = ranked[0]
    foreign = present & set().union(*(TASK_SOCKETS[t] for t in candidates)) - set(TASK_SOCKETS[chosen])
    if not foreign and (len(candidates) == 1 or _evidence(chosen, present)[0] > 0):
        return TASKS[chosen], None  # every socket is the chosen task's own, and one of them is its alone
    shares = ", ".join(f"Task {t}: {len(REQUIRED_SOCKETS[t] & present)}/{len(REQUIRED_SOCKETS[t])} required sockets"
                       for t in ranked)
    return TASKS[chosen], (f"sockets of Tasks {', '.join(map(str, candidates))} present; Task {chosen} chosen by "
                           f"its required sockets ({shares})")


def identify_task(slugs: list[str]) -> Task:
    """The task the sockets belong to (see `choose_task`); ValueError when none of them is a task's socket."""
    return choose_task(slugs)[0]
