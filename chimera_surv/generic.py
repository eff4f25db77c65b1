"""Tasks for cohorts outside CHIMERA: a generic survival or binary task named by the training config.

Why a separate spec: the three CHIMERA tasks are recognised by socket slugs and write fixed file names; a generic
task has neither (id 0, no socket pattern, no CHIMERA output file), so `inference.py` never mistakes its bundle for a
CHIMERA one. Its bundle predicts many patients at once with `python -m chimera_surv.predict_cohort`, into the file
the config names (`output_file`).
"""

from __future__ import annotations

import re
from typing import Any

from chimera_surv.tasks import TASKS, Task

GENERIC_KINDS = {"survival": "months", "binary": "probability"}
GENERIC_TASK_ID = 0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def generic_task(kind: str, name: str | None = None, output_file: str | None = None,
                 modalities: list[str] | tuple[str, ...] | None = None) -> Task:
    """A Task for a cohort outside CHIMERA. `kind`: survival (output in months) or binary (a probability)."""
    if kind not in GENERIC_KINDS:
        raise ValueError(f"a generic task is one of {sorted(GENERIC_KINDS)}, got {kind!r}")
    name = name or f"cohort-{kind}"
    if not _NAME.match(name):
        raise ValueError(f"task_name {name!r} must be a plain folder name (letters, digits, '.', '_', '-')")
    if name in {t.name for t in TASKS.values()}:
        raise ValueError(f"task_name {name!r} is a CHIMERA task's name; a generic task must not pose as one")
    output_file = output_file or f"{name}-predictions.csv"
    if output_file in {t.output_file for t in TASKS.values()}:
        raise ValueError(f"output_file {output_file!r} is a CHIMERA output file; choose another name")
    # No fallback constant: predict_cohort reports a patient it cannot predict instead of inventing a value.
    return Task(id=GENERIC_TASK_ID, name=name, output_file=output_file, output_kind=GENERIC_KINDS[kind],  # type: ignore[arg-type]
                modalities=tuple(modalities or ("clinical",)), clinical_schema="", fallback_value=float("nan"))


def task_from_config(config: dict[str, Any]) -> Task:
    """`task: 1|2|3` → the CHIMERA task (fixed names; `task_name`/`output_file` refused); `task: survival|binary`
    → a generic task named by `task_name` and `output_file`."""
    value = config.get("task")
    if str(value) in ("survival", "binary"):
        return generic_task(str(value), config.get("task_name"), config.get("output_file"), config.get("modalities"))
    try:
        task = TASKS[int(value)]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"task must be 1, 2, 3 (CHIMERA) or survival / binary (any cohort), got {value!r}") from None
    for key in ("task_name", "output_file"):
        if config.get(key):
            raise ValueError(f"`{key}` is for generic tasks only: CHIMERA task {task.id} keeps its fixed "
                             f"folder ({task.name}) and output file ({task.output_file})")
    return task


def task_meta(task: Task) -> dict[str, Any]:
    """What a bundle records about its task, so predict_cohort knows its kind and output file."""
    kind = "chimera" if task.id in TASKS else ("survival" if task.output_kind == "months" else "binary")
    return {"kind": kind, "name": task.name, "output_file": task.output_file, "output_kind": task.output_kind}
