"""Grand-challenge I/O: `/input/inputs.json` → `Case`, and the atomic one-number output.

Sockets are recognised by slug pattern (chimera_surv.tasks), image files by globbing their folder, JSON values from the
file at `relative_path` with the `value` field as fallback. Nothing here raises on bad content: every problem becomes
an entry in `Case.issues`, which predict.py turns into a DEGRADED log line.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from chimera_surv.case import Case, MRIInput, SlideInput
from chimera_surv.tasks import TASKS, Task, classify_slug, identify_task
from chimera_surv.writers import write_json_atomic

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".mha")

# The organisers' relative paths (chimera-spec.md §1.2-1.4), used only to rebuild a case when inputs.json is absent.
KNOWN_RELATIVE_PATHS: dict[str, str] = {
    "images/prostatectomy-wsi": "prostatectomy-tissue-whole-slide-image",
    "images/prostatectomy-tissue-mask": "prostatectomy-tissue-mask",
    "images/axial-t2-prostate-mri": "axial-t2-prostate-mri",
    "images/axial-adc-prostate-mri": "axial-adc-prostate-mri",
    "images/transverse-hbv-prostate-mri": "transverse-hbv-prostate-mri",
    "images/prostate-tissue-mask-for-axial-t2-prostate-mri": "prostate-tissue-mask-for-axial-t2-prostate-mri",
    "chimera-clinical-data-of-prostate-cancer-patients.json": "chimera-clinical-data-of-prostate-cancer-patients",
    "images/bladder-cancer-tissue-biopsy-wsi": "bladder-cancer-tissue-biopsy-whole-slide-image",
    "images/tissue-mask": "tissue-mask",
    "bulk-rna-seq-bladder-cancer.json": "bulk-rna-seq-bladder-cancer",
    "chimera-clinical-data-of-bladder-cancer-recurrence-patients.json":
        "chimera-clinical-data-of-bladder-cancer-recurrence",
    "chimera-clinical-data-of-bladder-cancer-patients.json": "chimera-clinical-data-of-bladder-cancer-patients",
}
for _k in range(1, 10):
    KNOWN_RELATIVE_PATHS[f"images/prostatectomy-wsi-z-{_k}"] = f"prostatectomy-tissue-whole-slide-image-{_k}"
    KNOWN_RELATIVE_PATHS[f"images/prostatectomy-tissue-mask-wsi-{_k}"] = f"prostatectomy-tissue-whole-slide-image-{_k}-2"


class UnknownTaskError(ValueError):
    """Neither inputs.json nor the folder layout tells which task this case belongs to."""


def inside(root: Path, relative: str) -> Path:
    """`root / relative`, refusing any path that escapes `root` (absolute paths, `..`, symlinks out)."""
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise ValueError(f"path {relative!r} escapes the input folder")
    return candidate


def read_inputs_json(input_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The socket list, or one rebuilt from the known folder layout when inputs.json is missing or unreadable."""
    path = input_dir / "inputs.json"
    try:
        entries = json.loads(path.read_text())
        if isinstance(entries, dict):
            entries = [entries]
        if not isinstance(entries, list):
            raise TypeError(f"expected a list, got {type(entries).__name__}")
        return [e for e in entries if isinstance(e, dict)], []
    except FileNotFoundError:
        issue = "inputs.json missing: sockets rebuilt from the organisers' folder layout"
    except (OSError, ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        issue = f"inputs.json unreadable ({exc}): sockets rebuilt from the organisers' folder layout"
    entries = []
    for relative, slug in KNOWN_RELATIVE_PATHS.items():
        if (input_dir / relative).exists():
            super_kind = "Value" if relative.endswith(".json") else "Image"
            entries.append({"interface": {"slug": slug, "relative_path": relative, "super_kind": super_kind}})
    return entries, [issue]


def socket_of(entry: dict[str, Any]) -> dict[str, Any]:
    """GC writes the socket under `socket` and the legacy `interface`; accept either."""
    socket = entry.get("socket") or entry.get("interface") or {}
    return socket if isinstance(socket, dict) else {}


def resolve_image(input_dir: Path, relative: str, expected_name: str | None) -> tuple[Path | None, list[str]]:
    """The one image file inside a socket folder; a missing or ambiguous folder is reported, not fatal."""
    try:
        folder = inside(input_dir, relative)
    except ValueError as exc:
        return None, [str(exc)]
    if folder.is_file() and folder.suffix.lower() in IMAGE_SUFFIXES:
        return folder, []
    files = sorted(p for p in folder.glob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES) \
        if folder.is_dir() else []
    if not files:
        return None, [f"no .tif/.tiff/.mha file in {relative}"]
    if len(files) == 1:
        return files[0], []
    by_name = [p for p in files if expected_name and p.name == expected_name]
    chosen = by_name[0] if by_name else files[0]
    return chosen, [f"{len(files)} image files in {relative}; using {chosen.name}"]


def read_value(input_dir: Path, entry: dict[str, Any], relative: str | None) -> tuple[Any, list[str]]:
    """A JSON socket's content: the file at `relative_path` first, the inline `value` as fallback."""
    issues: list[str] = []
    if relative:
        try:
            path = inside(input_dir, relative)
            if path.is_file():
                return json.loads(path.read_text()), []
            issues.append(f"{relative} not found")
        except ValueError as exc:  # escaping path or invalid JSON
            issues.append(f"{relative}: {exc}")
        except OSError as exc:
            issues.append(f"{relative}: {exc}")
    value = entry.get("value")
    if value is not None:
        if issues:
            issues.append(f"{relative}: used the inline value from inputs.json")
        return value, issues
    return None, issues


def read_case(input_dir: Path | str) -> Case:
    """Resolve every socket of one job. Raises only `UnknownTaskError` when the task cannot be told at all."""
    input_dir = Path(input_dir)
    entries, issues = read_inputs_json(input_dir)
    slugs = [str(socket_of(e).get("slug", "")) for e in entries]
    try:
        task = identify_task([s for s in slugs if s])
    except ValueError as exc:
        raise UnknownTaskError(str(exc)) from None

    case = Case(task=task, issues=issues)
    wsis: dict[int, tuple[Path | None, str | None]] = {}
    masks: dict[int, Path | None] = {}
    mri = MRIInput()
    for entry, slug in zip(entries, slugs):
        socket = socket_of(entry)
        relative = socket.get("relative_path")
        role = classify_slug(slug)
        if role is None:
            log.warning("ignoring unknown socket %r", slug)
            case.issues.append(f"unknown socket {slug!r} ignored")
            continue
        kind, index = role
        image_name = (entry.get("image") or {}).get("name") if isinstance(entry.get("image"), dict) else None
        if kind in ("clinical", "rna"):
            value, value_issues = read_value(input_dir, entry, relative)
            setattr(case, kind, value)
            case.issues += [f"{kind}: {i}" for i in value_issues]
            continue
        if not relative:
            case.issues.append(f"socket {slug} has no relative_path")
            continue
        path, image_issues = resolve_image(input_dir, relative, image_name)
        case.issues += [f"{slug}: {i}" for i in image_issues]
        if kind == "wsi":
            wsis[index] = (path, image_name)
        elif kind == "wsi_mask":
            masks[index] = path
        else:
            setattr(mri, kind.removeprefix("mri_"), path)

    for index in sorted(set(wsis) | set(masks)):
        wsi, name = wsis.get(index, (None, None))
        mask = masks.get(index)
        if wsi is None and index in masks:
            case.issues.append(f"slide {index}: tissue mask without a slide")
            continue
        if mask is None:
            case.issues.append(f"slide {index}: no tissue mask")
        case.slides.append(SlideInput(index=index, wsi=wsi, mask=mask, name=name))
    if task.id == 1:
        case.mri = mri
    names = [s.name for s in case.slides if s.name]
    case.case_id = Path(names[0]).stem if names else input_dir.name
    return case


def finite_output(value: Any, task: Task) -> float:
    """The value as a plain float the evaluator accepts, or a ValueError (never NaN or inf on disk)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"prediction {value!r} is not finite")
    if task.output_kind == "probability" and not 0.0 <= number <= 1.0:
        raise ValueError(f"probability {number} outside [0, 1]")
    if task.output_kind == "months" and number < 0.0:
        raise ValueError(f"time {number} is negative")
    return number


def write_output(output_dir: Path | str, task: Task, value: float) -> Path:
    """One bare finite JSON float at the task's output file, written atomically."""
    return write_json_atomic(Path(output_dir) / task.output_file, finite_output(value, task))


def all_tasks() -> list[Task]:
    return [TASKS[k] for k in sorted(TASKS)]
