"""Where a patient's files are in the CHIMERA training layouts, by file name (never by folder depth).

Why here and not in train/: training (train/cohort.py) and `predict_cohort` must find the same slides, masks, MRI
volumes and slide embeddings for a case id, and chimera_surv never imports train. Task 1 keeps the clinical JSON
in `clinical_data/<id>.json` and the images elsewhere, named `<id>_...`; Tasks 2/3 keep `<id>_CD.json` beside them.
"""

from __future__ import annotations

from pathlib import Path

from chimera_surv.case import MRIInput, SlideInput

MASK_SUFFIXES = ("_tissue", "_mask", "_HE_mask")
MRI_KEYS = {"t2w": "t2", "t2": "t2", "adc": "adc", "hbv": "hbv", "mask": "mask"}
EMBEDDINGS_FOLDER = "slide_embeddings"


def strip_mask_suffix(stem: str) -> str | None:
    """The slide stem a mask belongs to (`<stem>_tissue` / `<stem>_mask`), None when `stem` is no mask."""
    for suffix in MASK_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return None


def slides_for(files: list[Path]) -> list[SlideInput]:
    """Pair each slide with its mask (`<stem>_tissue.tif` or `<stem>_mask.tif`), in sorted name order."""
    images = [p for p in files if p.suffix.lower() in (".tif", ".tiff")]
    masks = {strip_mask_suffix(p.stem): p for p in images if strip_mask_suffix(p.stem) is not None}
    slides = [p for p in images if strip_mask_suffix(p.stem) is None]
    return [SlideInput(index=i, wsi=p, mask=masks.get(p.stem), name=p.name) for i, p in enumerate(sorted(slides))]


def mri_volumes(files: list[Path]) -> dict[str, Path]:
    """MRIInput field → volume: `*_{t2w,t2,adc,hbv,mask}.mha`, the first in name order per field."""
    found: dict[str, Path] = {}
    for path in sorted(files):
        if path.suffix.lower() != ".mha":
            continue
        key = MRI_KEYS.get(path.stem.rsplit("_", 1)[-1].lower())
        if key and key not in found:
            found[key] = path
    return found


def mri_for(files: list[Path]) -> MRIInput | None:
    found = mri_volumes(files)
    return MRIInput(**found) if found else None


def index_files(root: Path, case_ids: list[str]) -> dict[str, list[Path]]:
    """Each case's files: names starting with `<case id>_` (ids may themselves contain `_`, e.g. 3A_001)."""
    by_prefix: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            by_prefix.setdefault(path.name.split("_", 1)[0], []).append(path)
    groups: dict[str, list[Path]] = {}
    for case_id in case_ids:
        candidates = by_prefix.get(case_id.split("_", 1)[0], [])
        groups[case_id] = [p for p in candidates if p.name.startswith(case_id + "_")]
    return groups


def task1_clinical_paths(root: Path) -> dict[str, Path]:
    """case id → `clinical_data/<id>.json` (the Task 1 training layout)."""
    return {p.stem: p for p in sorted(root.rglob("clinical_data/*.json"))}


def clinical_paths(root: Path) -> dict[str, Path]:
    """case id → clinical JSON: `<id>_CD.json` (Tasks 2/3) or `clinical_data/<id>.json` (Task 1)."""
    found = {p.name[: -len("_CD.json")]: p for p in sorted(root.rglob("*_CD.json"))}
    for case_id, path in task1_clinical_paths(root).items():
        found.setdefault(case_id, path)
    return found


def embeddings_under(root: Path, case_ids: list[str]) -> dict[str, list[Path]]:
    """id → slide-encoder vectors in any `slide_embeddings/` folder under `root` named `<id>.<ext>` or
    `<id>_<slide>.<ext>` (.h5/.npy/.json; a `.npy`'s `.json` sidecar is not a slide); ids without one are absent."""
    from chimera_surv.readers.precomputed import embedding_files

    files = [p for folder in sorted(root.rglob(EMBEDDINGS_FOLDER)) if folder.is_dir()
             for p in embedding_files(folder)]
    found: dict[str, list[Path]] = {}
    for case_id in case_ids:
        mine = sorted(p for p in files if p.stem == case_id or p.stem.startswith(case_id + "_"))
        if mine:
            found[case_id] = mine
    return found
