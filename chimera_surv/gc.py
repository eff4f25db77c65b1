"""Grand-challenge I/O: `/input/inputs.json` → `Case`, and the atomic one-number output.

Sockets are recognised by exact slug (chimera_surv.tasks), image files by globbing their folder, JSON values from the
file at `relative_path` with the `value` field as fallback. Nothing here raises on bad content: every problem becomes
an entry in `Case.issues`, which predict.py turns into a DEGRADED log line.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chimera_surv.case import Case, MRIInput, SlideInput
from chimera_surv.errors import describe
from chimera_surv.limits import MAX_JSON_BYTES
from chimera_surv.tasks import OBSOLETE_SOCKETS, TASKS, Task, choose_task, classify_slug, owner_tasks
from chimera_surv.writers import write_json_atomic

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".mha")
FEATURES_FOLDER = "features"  # <input>/features/<slide stem>.h5: precomputed patch features (feature_file)

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


def inside(root: Path, relative: Any) -> Path:
    """`root / relative`, refusing any path that escapes `root` (absolute paths, `..`, symlinks out)."""
    if not isinstance(relative, str) or not relative:
        raise ValueError(f"path {relative!r} is not a non-empty string")
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise ValueError(f"path {relative!r} escapes the input folder")
    return candidate


def read_json_file(root: Path, relative: str) -> Any:
    """A JSON file inside `root`, size-checked before reading; raises ValueError/OSError with the cause."""
    path = inside(root, relative)
    if path.exists() and not path.is_file():  # a folder, a FIFO (reading it would block forever), a device
        raise ValueError("not a regular file")
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise ValueError(f"{size} bytes, over the {MAX_JSON_BYTES}-byte limit for a JSON socket")
    try:
        return json.loads(path.read_text())
    except RecursionError:
        raise ValueError(f"JSON nested too deeply ({size} bytes)") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits
        raise ValueError(f"not valid JSON ({size} bytes): {err}") from None


def read_inputs_json(input_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The socket list, or one rebuilt from the known folder layout when inputs.json is missing or unreadable."""
    try:
        entries = read_json_file(input_dir, "inputs.json")
        if isinstance(entries, dict):
            entries = [entries]
        if not isinstance(entries, list):
            raise TypeError(f"expected a list, got {type(entries).__name__}")
        kept = [e for e in entries if isinstance(e, dict)]
        dropped = len(entries) - len(kept)
        return kept, [f"inputs.json: {dropped} entries that are not JSON objects ignored"] if dropped else []
    except FileNotFoundError:
        issue = "inputs.json missing: sockets rebuilt from the organisers' folder layout"
    except Exception as exc:  # noqa: BLE001 - any unreadable inputs.json (JSON, size, link out, MemoryError ...)
        issue = f"inputs.json unreadable ({describe(exc)}): sockets rebuilt from the organisers' folder layout"
    return layout_entries(input_dir), [issue]


def layout_entries(input_dir: Path) -> list[dict[str, Any]]:
    """Sockets rebuilt from the organisers' known relative paths that exist under `input_dir`."""
    entries = []
    for relative, slug in KNOWN_RELATIVE_PATHS.items():
        if (input_dir / relative).exists():
            super_kind = "Value" if relative.endswith(".json") else "Image"
            entries.append({"interface": {"slug": slug, "relative_path": relative, "super_kind": super_kind}})
    return entries


def socket_of(entry: dict[str, Any]) -> dict[str, Any]:
    """GC writes the socket under `socket` and the legacy `interface`; accept either."""
    for key in ("socket", "interface"):
        if isinstance(entry.get(key), dict) and entry[key]:
            return entry[key]
    return {}


def slug_of(entry: dict[str, Any]) -> str:
    """The socket's slug, or "" when it is absent or not a string."""
    slug = socket_of(entry).get("slug")
    return slug if isinstance(slug, str) else ""


def resolve_image(input_dir: Path, relative: str, expected_name: str | None) -> tuple[Path | None, list[str]]:
    """The one image file inside a socket folder; a missing or ambiguous folder is reported, not fatal.

    A file that is a link resolving outside the input folder is refused like a `..` path.
    """
    try:
        folder = inside(input_dir, relative)
    except ValueError as exc:
        return None, [str(exc)]
    if folder.is_file() and folder.suffix.lower() in IMAGE_SUFFIXES:
        return folder, []
    issues: list[str] = []
    files = []
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        resolved = path.resolve()
        if not resolved.is_relative_to(input_dir.resolve()):
            issues.append(f"{path.name} links outside the input folder; refused")
            continue
        if resolved.is_file():
            files.append(path)
    if not files:
        return None, issues + [f"no .tif/.tiff/.mha file in {relative}"]
    if len(files) == 1:
        return files[0], issues
    by_name = [p for p in files if expected_name and p.name == expected_name]
    chosen = by_name[0] if by_name else files[0]
    return chosen, issues + [f"{len(files)} image files in {relative}; using {chosen.name}"]


def feature_file(input_dir: Path, relative: str, slide: Path | None) -> Path | None:
    """A slide's precomputed patch features: `<slide stem>.h5` beside the slide or in `<input>/features/`, or the
    only `.h5` of a slide socket folder that holds no slide. Links out of the input folder are refused."""
    try:
        folder = inside(input_dir, relative)
    except ValueError:
        return None
    folder = folder.parent if folder.is_file() else folder
    name = f"{slide.name.split('.')[0]}.h5" if slide is not None else None
    candidates = [folder / name, input_dir / FEATURES_FOLDER / name] if name else []
    if slide is None and folder.is_dir():
        found = sorted(folder.glob("*.h5"))
        candidates += found if len(found) == 1 else []
    for path in candidates:
        if path.is_file() and path.resolve().is_relative_to(input_dir.resolve()):
            return path
    return None


def mri_feature_file(folder: Path) -> Path | None:
    """A precomputed MRI feature vector `<folder>/features/mri.{json,h5,npy}` (read instead of the volumes)."""
    for suffix in (".json", ".h5", ".npy"):
        path = folder / FEATURES_FOLDER / f"mri{suffix}"
        if path.is_file() and path.resolve().is_relative_to(folder.resolve()):
            return path
    return None


def slide_embedding_files(folder: Path) -> list[Path]:
    """Slide-encoder vectors `<folder>/features/slide_embeddings/*.{h5,npy,json}` (modality slide_embedding)."""
    from chimera_surv.readers.precomputed import embedding_files

    root = folder.resolve()
    return [p for p in embedding_files(folder / FEATURES_FOLDER / "slide_embeddings")
            if p.resolve().is_relative_to(root)]


def read_value(input_dir: Path, entry: dict[str, Any], relative: str | None) -> tuple[Any, list[str]]:
    """A JSON socket's content: the file at `relative_path` first, the inline `value` as fallback."""
    issues: list[str] = []
    if relative is not None:
        try:
            return read_json_file(input_dir, relative), []
        except FileNotFoundError:
            issues.append(f"{relative} not found")
        except Exception as exc:  # noqa: BLE001 - escaping path, invalid or huge JSON, OSError ...
            issues.append(f"{relative}: {describe(exc)}")
    value = entry.get("value")
    if value is not None:
        if issues:
            issues.append(f"{relative}: used the inline value from inputs.json")
        return value, issues
    return None, issues


def read_case(input_dir: Path | str) -> Case:
    """Resolve every socket of one job. Raises only `UnknownTaskError` when the task cannot be told at all.

    The task follows from the exact slugs the tasks define (tasks.choose_task); every other socket is ignored with
    an issue. Any failure while reading one socket costs that socket only.
    """
    input_dir = Path(input_dir)
    entries, issues = read_inputs_json(input_dir)
    slugs = [slug_of(e) for e in entries]
    try:
        task, note = choose_task([s for s in slugs if s])
    except ValueError as exc:
        rebuilt = layout_entries(input_dir)
        if rebuilt == entries or not rebuilt:  # already rebuilt (inputs.json unreadable), or nothing to try
            raise UnknownTaskError(str(exc)) from None
        issues.append(f"inputs.json names no socket of any task ({exc}): sockets rebuilt from the folder layout")
        entries, slugs = rebuilt, [slug_of(e) for e in rebuilt]
        task, note = choose_task(slugs)
    if note:
        log.warning("%s", note)
        issues.append(note)

    case = Case(task=task, issues=issues)
    parts = _CaseParts()
    seen: dict[str, str] = {}
    for entry, slug in zip(entries, slugs):
        if slug in seen:
            case.issues.append(f"socket {slug!r} appears more than once in inputs.json; used the first "
                               f"({seen[slug]}), ignored relative_path {socket_of(entry).get('relative_path')!r}")
            continue
        role = classify_slug(slug, task) if slug else None
        if role is None:
            case.issues.append(_ignored(slug, entry, task))
            continue
        seen[slug] = repr(socket_of(entry).get("relative_path"))
        try:
            _read_socket(input_dir, entry, slug, role, case, parts)
        except Exception as exc:  # noqa: BLE001 - one broken socket costs that socket, never the case
            case.issues.append(f"socket {slug!r} unreadable ({describe(exc)}); ignored")

    for index in sorted(set(parts.wsis) | set(parts.masks)):
        wsi, name = parts.wsis.get(index, (None, None))
        mask = parts.masks.get(index)
        features = parts.features.get(index)
        if wsi is None and features is None and index in parts.masks:
            case.issues.append(f"slide {index}: tissue mask without a slide")
            continue
        if mask is None and features is None:
            case.issues.append(f"slide {index}: no tissue mask")
        case.slides.append(SlideInput(index=index, wsi=wsi, mask=mask, name=name, features=features))
    if task.id == 1:
        case.mri = parts.mri
        case.mri.features = mri_feature_file(input_dir)
    case.slide_embeddings = slide_embedding_files(input_dir)
    names = [s.name for s in case.slides if s.name]
    case.case_id = Path(names[0]).stem if names else input_dir.name
    return case


@dataclass
class _CaseParts:
    """Image sockets collected while reading inputs.json, paired into slides at the end."""

    wsis: dict[int, tuple[Path | None, str | None]] = field(default_factory=dict)
    masks: dict[int, Path | None] = field(default_factory=dict)
    mri: MRIInput = field(default_factory=MRIInput)
    features: dict[int, Path] = field(default_factory=dict)  # precomputed `.h5` per slide index


def _ignored(slug: str, entry: dict[str, Any], task: Task) -> str:
    """The issue (and warning) for a socket that is not one of the task's own."""
    if not slug:
        reason = f"socket without a usable slug ignored (keys {sorted(entry)[:6]})"
    elif slug in OBSOLETE_SOCKETS:
        reason = f"obsolete Task 1 socket {slug!r} ignored"
    elif owner_tasks(slug):
        reason = f"socket {slug!r} of Task {owner_tasks(slug)[0]} ignored in a Task {task.id} case"
    else:
        reason = f"unknown socket {slug!r} ignored"
    log.warning("%s", reason)
    return reason


def _read_socket(input_dir: Path, entry: dict[str, Any], slug: str, role: tuple[str, int], case: Case,
                 parts: _CaseParts) -> None:
    """Read one socket of the case's task into `case` (JSON values) or `parts` (image files)."""
    relative = socket_of(entry).get("relative_path")
    kind, index = role
    image = entry.get("image")
    image_name = image.get("name") if isinstance(image, dict) else None
    if image_name is not None and not isinstance(image_name, str):
        case.issues.append(f"{slug}: image.name {image_name!r} is not a string; ignored")
        image_name = None
    if kind in ("clinical", "rna"):
        value, value_issues = read_value(input_dir, entry, relative)
        setattr(case, kind, value)
        case.issues += [f"{kind}: {i}" for i in value_issues]
        return
    if not relative:
        case.issues.append(f"socket {slug} has no relative_path")
        return
    path, image_issues = resolve_image(input_dir, relative, image_name)
    case.issues += [f"{slug}: {i}" for i in image_issues]
    if kind == "wsi":
        parts.wsis[index] = (path, image_name)
        features = feature_file(input_dir, relative, path)
        if features is not None:
            parts.features[index] = features
    elif kind == "wsi_mask":
        parts.masks[index] = path
    else:
        setattr(parts.mri, kind.removeprefix("mri_"), path)


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
