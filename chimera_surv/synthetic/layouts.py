"""The two on-disk layouts of synthetic patients: grand-challenge jobs and the CHIMERA training cohort.

Why: the container is tested on cases shaped exactly like a grand-challenge job (`inputs.json` with socket
records, image folders with one file each, JSON values at their relative paths; chimera-spec.md §1), and the
training code on a cohort shaped like the organisers' S3 bucket (chimera-spec.md §2). Both come from the same
`SyntheticPatient`, so a model trained on one layout can be scored on the other against the oracle.
The command line is `python -m chimera_surv.make_cases` (make_cases.py).
"""

from __future__ import annotations

import csv
import shutil
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chimera_surv.synthetic.patients import SyntheticPatient
from chimera_surv.synthetic.render import render_mri, render_slide
from chimera_surv.writers import write_json_atomic, write_mask, write_mha, write_wsi

UUID_NAMESPACE = uuid.UUID("6b1f3c2e-9d4a-4e8b-a7c1-3f5e2d9c8b70")  # fixed: image pks are reproducible
STREAM_FIRST_ID = {"training": 1, "test": 901}  # grand-challenge cases never reuse a training id


# ------------------------------------------------------------------------------------------------------------
# Socket records (chimera-spec.md §1.1-1.4)
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Socket:
    """One grand-challenge socket as it appears under `interface`/`socket` in inputs.json."""

    slug: str
    title: str
    relative_path: str
    super_kind: str  # "Image" or "Value"
    description: str = ""

    def record(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": self.description,
            "slug": self.slug,
            "kind": "Image" if self.super_kind == "Image" else "Anything",
            "pk": zlib.crc32(self.slug.encode()) % 90000 + 10000,
            "default_value": None,
            "super_kind": self.super_kind,
            "relative_path": self.relative_path,
            "overlay_segments": [],
            "look_up_table": None,
        }


def _image(slug: str, folder: str, title: str) -> Socket:
    return Socket(slug, title, f"images/{folder}", "Image", f"{title} (synthetic)")


def _value(slug: str, path: str, title: str) -> Socket:
    return Socket(slug, title, path, "Value", f"{title} (synthetic)")


MRI_SOCKETS = {
    "t2w": _image("axial-t2-prostate-mri", "axial-t2-prostate-mri", "Axial T2 Prostate MRI"),
    "adc": _image("axial-adc-prostate-mri", "axial-adc-prostate-mri", "Axial ADC Prostate MRI"),
    "hbv": _image(
        "transverse-hbv-prostate-mri", "transverse-hbv-prostate-mri", "Transverse HBV Prostate MRI"
    ),
    "mask": _image(
        "prostate-tissue-mask-for-axial-t2-prostate-mri",
        "prostate-tissue-mask-for-axial-t2-prostate-mri",
        "Prostate Tissue Mask for Axial T2 Prostate MRI",
    ),
}
PROSTATE_CLINICAL = _value(
    "chimera-clinical-data-of-prostate-cancer-patients",
    "chimera-clinical-data-of-prostate-cancer-patients.json",
    "CHIMERA Clinical Data of Prostate Cancer Patients",
)
BLADDER_WSI = _image(
    "bladder-cancer-tissue-biopsy-whole-slide-image",
    "bladder-cancer-tissue-biopsy-wsi",
    "Bladder Cancer Tissue Biopsy Whole Slide Image",
)
BLADDER_MASK = _image("tissue-mask", "tissue-mask", "Tissue Mask")
BRS_CLINICAL = _value(
    "chimera-clinical-data-of-bladder-cancer-patients",
    "chimera-clinical-data-of-bladder-cancer-patients.json",
    "CHIMERA Clinical Data of Bladder Cancer Patients",
)
RECURRENCE_CLINICAL = _value(
    "chimera-clinical-data-of-bladder-cancer-recurrence",
    "chimera-clinical-data-of-bladder-cancer-recurrence-patients.json",
    "CHIMERA Clinical Data of Bladder Cancer Recurrence",
)
RNA = _value("bulk-rna-seq-bladder-cancer", "bulk-rna-seq-bladder-cancer.json", "Bulk RNA-seq Bladder Cancer")


def prostate_slide_sockets(index: int) -> tuple[Socket, Socket]:
    """(WSI, mask) sockets of Task 1 slide `index`: 0 = the base pair, k ≥ 1 = `...-image-k` (+ `-2`)."""
    if index == 0:
        return (
            _image(
                "prostatectomy-tissue-whole-slide-image",
                "prostatectomy-wsi",
                "Prostatectomy Tissue Whole Slide Image",
            ),
            _image("prostatectomy-tissue-mask", "prostatectomy-tissue-mask", "Prostatectomy Tissue Mask"),
        )
    if not 1 <= index <= 9:
        raise ValueError(f"Task 1 interfaces carry at most 10 slides, got index {index}")
    slug = f"prostatectomy-tissue-whole-slide-image-{index}"
    return (
        _image(slug, f"prostatectomy-wsi-z-{index}", f"Prostatectomy Tissue Whole Slide Image {index}"),
        _image(f"{slug}-2", f"prostatectomy-tissue-mask-wsi-{index}", f"Prostatectomy Tissue Mask {index}"),
    )


# ------------------------------------------------------------------------------------------------------------
# File names shared by both layouts (the training names; GC keeps the uploaded name in `image.name`)
# ------------------------------------------------------------------------------------------------------------


def slide_names(patient: SyntheticPatient, index: int) -> tuple[str, str]:
    if patient.task == 1:
        scan = f"{patient.case_id}_{index + 1}"
        return f"{scan}.tif", f"{scan}_tissue.tif"
    return f"{patient.case_id}_HE.tif", f"{patient.case_id}_HE_mask.tif"


def mri_name(patient: SyntheticPatient, sequence: str) -> str:
    return f"{patient.case_id}_0001_{sequence}.mha"


def _write_slide_pair(patient: SyntheticPatient, index: int, wsi_path: Path, mask_path: Path) -> None:
    params = patient.slides[index]
    rgb, mask = render_slide(params)
    write_wsi(wsi_path, rgb, params.mpp)
    write_mask(mask_path, mask, params.mask_mpp)


def _write_mri(patient: SyntheticPatient, path_for: Callable[[str], Path]) -> None:
    assert patient.mri is not None
    for sequence, volume in render_mri(patient.mri).items():
        write_mha(path_for(sequence), volume.array, volume.spacing, volume.origin)


# ------------------------------------------------------------------------------------------------------------
# Writer (a): grand-challenge input layout
# ------------------------------------------------------------------------------------------------------------


def _element(
    case_key: str, socket: Socket, *, image_name: str | None = None, value: Any = None
) -> dict[str, Any]:
    ident = uuid.uuid5(UUID_NAMESPACE, f"{case_key}/{socket.slug}")
    record = socket.record()
    return {
        "pk": ident.int % 10**8,
        "file": None,
        "image": {"pk": str(ident), "name": image_name} if image_name is not None else None,
        "value": value if image_name is None else None,
        "interface": record,
        "socket": dict(record),
    }


def write_gc_case(patient: SyntheticPatient, out_dir: Path | str, seed: int = 0) -> Path:
    """`<out>/<case_id>/` holding inputs.json, images/<folder>/<name>, JSON values and expected.json.

    A previous version of the same case folder is replaced, so each image folder holds exactly one file.
    """
    case_dir = Path(out_dir) / patient.case_id
    if case_dir.exists():
        if not (case_dir / "inputs.json").exists() and any(case_dir.iterdir()):
            raise FileExistsError(f"{case_dir} exists and is not a generated case; refusing to replace it")
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    case_key = f"{seed}/{patient.task}/{patient.case_id}"
    elements: list[dict[str, Any]] = []

    def add_image(socket: Socket, name: str) -> Path:
        folder = case_dir / socket.relative_path
        folder.mkdir(parents=True, exist_ok=True)
        elements.append(_element(case_key, socket, image_name=name))
        return folder / name

    def add_value(socket: Socket, value: Any, indent: int | None = 4) -> None:
        write_json_atomic(case_dir / socket.relative_path, value, indent=indent)
        elements.append(_element(case_key, socket, value=value))

    for index in range(len(patient.slides)):
        wsi_name, mask_name = slide_names(patient, index)
        if patient.task == 1:
            wsi_socket, mask_socket = prostate_slide_sockets(index)
        else:
            wsi_socket, mask_socket = BLADDER_WSI, BLADDER_MASK
        _write_slide_pair(patient, index, add_image(wsi_socket, wsi_name), add_image(mask_socket, mask_name))
    if patient.task == 1:
        paths = {seq: add_image(MRI_SOCKETS[seq], mri_name(patient, seq)) for seq in MRI_SOCKETS}
        _write_mri(patient, paths.__getitem__)
        add_value(PROSTATE_CLINICAL, patient.clinical)
    elif patient.task == 2:
        add_value(BRS_CLINICAL, patient.clinical)
    else:
        if patient.rna is not None:
            add_value(RNA, patient.rna, indent=None)
        add_value(RECURRENCE_CLINICAL, patient.clinical)
    write_json_atomic(case_dir / "inputs.json", elements, indent=2)
    write_json_atomic(case_dir / "expected.json", patient.expected())
    return case_dir


# ------------------------------------------------------------------------------------------------------------
# Writer (b): CHIMERA training layout
# ------------------------------------------------------------------------------------------------------------

TRAINING_ENTRIES = ("clinical_data", "pathology", "radiology", "data", "labels.csv")


def write_training_case(patient: SyntheticPatient, root: Path | str) -> list[Path]:
    """One patient's files under the cohort root (chimera-spec.md §2.1-2.3); returns the written paths."""
    root = Path(root)
    written: list[Path] = []
    if patient.task == 1:
        pid = patient.case_id
        written.append(write_json_atomic(root / "clinical_data" / f"{pid}.json", patient.training_clinical()))
        slide_dir = root / "pathology" / "images" / pid
        slide_dir.mkdir(parents=True, exist_ok=True)
        for index in range(len(patient.slides)):
            wsi_name, mask_name = slide_names(patient, index)
            _write_slide_pair(patient, index, slide_dir / wsi_name, slide_dir / mask_name)
            written += [slide_dir / wsi_name, slide_dir / mask_name]
        if patient.mri is not None:
            mri_dir = root / "radiology" / "images" / pid
            mri_dir.mkdir(parents=True, exist_ok=True)
            _write_mri(patient, lambda seq: mri_dir / mri_name(patient, seq))
            written += [mri_dir / mri_name(patient, seq) for seq in MRI_SOCKETS]
        return written
    case_dir = root / "data" / patient.case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    if patient.slides:
        wsi_name, mask_name = slide_names(patient, 0)
        _write_slide_pair(patient, 0, case_dir / wsi_name, case_dir / mask_name)
        written += [case_dir / wsi_name, case_dir / mask_name]
    written.append(write_json_atomic(case_dir / f"{patient.case_id}_CD.json", patient.training_clinical()))
    if patient.task == 3 and patient.rna is not None:
        written.append(write_json_atomic(case_dir / f"{patient.case_id}_RNA.json", patient.rna, indent=None))
    return written


def write_labels_csv(patients: list[SyntheticPatient], path: Path | str) -> Path:
    """id, cohort, outcome and latent risk per patient: for reports and the oracle, never for training."""
    path = Path(path)
    task = patients[0].task if patients else 3
    columns = ["id", "cohort"] + (["brs3", "brs"] if task == 2 else ["time", "event"]) + ["latent_risk"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for p in patients:
            outcome = [p.brs3, p.labels.get("BRS")] if task == 2 else [p.time, p.event]
            writer.writerow([p.case_id, p.cohort, *outcome, f"{p.latent_risk:.6f}"])
    return path


def write_training_cohort(
    patients: list[SyntheticPatient], root: Path | str, workers: int = 1, overwrite: bool = False
) -> Path:
    """A whole cohort plus labels.csv. With `overwrite`, earlier generated entries of the root are removed
    first (only the layout's own folders), so a smaller cohort never leaves stale patients behind."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    existing = [root / name for name in TRAINING_ENTRIES if (root / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{root} already holds a cohort ({existing[0].name}); pass overwrite=True")
    for entry in existing:
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    _run_parallel(lambda p: write_training_case(p, root), patients, workers)
    write_labels_csv(patients, root / "labels.csv")
    return root


def write_gc_cases(
    patients: list[SyntheticPatient], out_dir: Path | str, seed: int = 0, workers: int = 1
) -> list[Path]:
    return _run_parallel(lambda p: write_gc_case(p, out_dir, seed), patients, workers)


def _run_parallel(
    job: Callable[[SyntheticPatient], Any], patients: list[SyntheticPatient], workers: int
) -> list[Any]:
    """Threads suffice: pyvips, the JPEG encoder and most numpy work release the GIL. Output does not depend
    on `workers` because every patient renders from its own seed."""
    if workers <= 1:
        return [job(p) for p in patients]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(job, patients))
