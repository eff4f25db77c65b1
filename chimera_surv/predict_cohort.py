"""`python -m chimera_surv.predict_cohort BUNDLE INPUT [--out FILE]`: predict many patients with one bundle.

For cohorts outside CHIMERA (a generic survival or binary bundle, chimera_surv/generic.py), and usable with any
bundle. INPUT is either
- a folder: every folder holding a `*_CD.json` (clinical) or `*_RNA.json` is one patient, named by that folder
  (the training layout `<root>/data/<id>/<id>_CD.json`); slides (`*.tif` + `*_mask.tif`/`*_tissue.tif`) and MRI
  (`*_t2w.mha`, ...) next to them are used when the bundle has those modalities;
- or a folder in the CHIMERA Task 1 training layout: each `clinical_data/<id>.json` is one patient, with the slides,
  masks, MRI volumes and `slide_embeddings/` vectors anywhere under the folder whose names start with `<id>_`
  (chimera_surv/readers/layout.py, the names training reads);
- or a CSV: one row per patient, the id in `--id-column` (default `case_id`), clinical fields in the columns the
  bundle's schema names, gene values in columns named by the bundle's genes (RNA is used when any is present).
The output (CSV, or JSON when FILE ends in .json) has one row per patient: `case_id`, the value (`months`: the
time where the training Kaplan-Meier curve crosses the patient's risk quantile, higher = later; or `probability`),
`risk` (the ensemble's standardised risk, mean 0 / SD 1 over training, higher = worse), `used` modalities and
`status`; survival bundles add `S(<h> months)` (probability of being event-free at each horizon the bundle
stores), `median_months` and `months_past_follow_up` (chimera_surv/meaning.py). Its default name is the config's `output_file`, recorded in
the bundle. A patient the bundle cannot predict gets an empty value, `status` = the error and a DEGRADED log line;
the others are still written. Exit status 0 when at least one patient was predicted.
Each patient is predicted on its own: nothing is fitted on the input cohort.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from chimera_surv.case import Case, MRIInput, SlideInput
from chimera_surv.cli import Parser, UserError, require_columns, require_path, run_cli
from chimera_surv.gc import mri_feature_file, slide_embedding_files
from chimera_surv.generic import generic_task
from chimera_surv.predict import DegradedLog, modality_inputs, parse_clinical_record
from chimera_surv.readers.layout import (
    embeddings_under,
    index_files,
    mri_volumes,
    slides_for,
    task1_clinical_paths,
)

log = logging.getLogger("chimera_surv.predict_cohort")


def folder_cases(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """(case id, {"clinical", "rna", "slides", "mri", "slide_embeddings"}) for each patient under `root`, sorted by
    id: patient folders (`*_CD.json` / `*_RNA.json`), then Task 1 patients (`clinical_data/<id>.json`) not found so.
    """
    folders = sorted({p.parent for pattern in ("*_CD.json", "*_RNA.json") for p in root.rglob(pattern)})
    cases = [(folder.name, _folder_case(folder)) for folder in folders]
    task1 = {k: path for k, path in task1_clinical_paths(root).items() if k not in {c[0] for c in cases}}
    if task1:  # images anywhere under the root, named `<id>_...` (readers/layout.py, as training finds them)
        files = index_files(root, sorted(task1))
        embeddings = embeddings_under(root, sorted(task1))
        for case_id, clinical in task1.items():
            cases.append((case_id, _task1_case(clinical, files[case_id], embeddings.get(case_id, []))))
    return sorted(cases, key=lambda case: case[0])


def _task1_case(clinical: Path, own: list[Path], embeddings: list[Path]) -> dict[str, Any]:
    """A Task 1 patient's inputs: its clinical JSON and the files named `<id>_...` anywhere under the root."""
    volumes = mri_volumes(own)
    return {"clinical": clinical, "rna": next((p for p in own if p.name.endswith("_RNA.json")), None),
            "slides": slides_for(own), "mri": MRIInput(**volumes) if volumes else None, "slide_embeddings": embeddings}


def _folder_case(folder: Path) -> dict[str, Any]:
    """One patient folder's inputs: paths, read per patient later (a broken file costs that modality only)."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return {"clinical": next((p for p in files if p.name.endswith("_CD.json")), None),
            "rna": next((p for p in files if p.name.endswith("_RNA.json")), None),
            "slides": _with_features(folder, files, slides_for(files)),
            "mri": _mri_input(folder, mri_volumes(files)), "slide_embeddings": slide_embedding_files(folder)}


def _mri_input(folder: Path, volumes: dict[str, Path]) -> MRIInput | None:
    """The MRI volumes, and a precomputed vector `features/mri.{json,h5,npy}` (used instead of them) if present."""
    features = mri_feature_file(folder)
    return MRIInput(**volumes, features=features) if volumes or features else None


def _with_features(folder: Path, files: list[Path], slides: list[SlideInput]) -> list[SlideInput]:
    """Attach precomputed `.h5` patch features: `<slide stem>.h5` beside the slide or in `features/`; an `.h5`
    matching no slide is a slide given only as features. A slide with features is never decoded."""
    found = {p.name.split(".")[0]: p for p in sorted((folder / "features").glob("*.h5"))} \
        if (folder / "features").is_dir() else {}
    found.update({p.name.split(".")[0]: p for p in files if p.suffix.lower() == ".h5"})
    for slide in slides:
        slide.features = found.pop(slide.wsi.name.split(".")[0], None) if slide.wsi is not None else None
    return slides + [SlideInput(index=len(slides) + i, wsi=None, mask=None, name=p.name, features=p)
                     for i, p in enumerate(found[k] for k in sorted(found))]


def csv_cases(path: Path, bundle: Any, id_column: str) -> list[tuple[str, dict[str, Any]]]:
    """(case id, inputs) per table row (chimera_surv/readers/table.py: a bad row or byte costs that row only, named
    in a TABLE log line and, when it has an id, as a failed output row): schema fields → clinical JSON, gene
    columns → RNA JSON."""
    from chimera_surv.readers.table import read_table

    frame, problems = read_table(path, id_column)
    for problem in problems:
        log.warning("TABLE %s", problem)
    genes = set(bundle.genes)
    cases = []
    for row in frame.to_dict("records"):
        row = {k: (v if isinstance(v, str) else None) for k, v in row.items()}
        clinical = {k: _cell(v) for k, v in row.items() if k != id_column and k not in genes}
        rna = {k: v for k, v in row.items() if k in genes and v is not None}
        cases.append((row[id_column], {"clinical": clinical, "rna": rna or None, "slides": [], "mri": None}))
    for line, row_id, cause in frame.attrs.get("rejected", []):
        if row_id is not None and row_id not in {c[0] for c in cases}:
            cases.append((row_id, {"rejected": f"{path.name} line {line}: {cause}"}))
    return cases


def _cell(text: str | None) -> Any:
    """A CSV cell as JSON would carry it: a number when it reads as one, None when empty, else the text."""
    if text is None or text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def bundle_task(bundle: Any) -> Any:
    """The task the bundle was trained for (generic: from its meta; CHIMERA: the fixed task)."""
    from chimera_surv.tasks import TASKS

    meta = (bundle.meta or {}).get("task") or {}
    if bundle.task_id in TASKS:
        return TASKS[bundle.task_id]
    kind = meta.get("kind") or ("survival" if bundle.output_kind == "months" else "binary")
    return generic_task(kind, meta.get("name"), meta.get("output_file"), bundle.modalities)


def predict_one(bundle: Any, task: Any, case_id: str, inputs: dict[str, Any], model_root: Path,
                device: str | None) -> dict[str, Any]:
    """One patient through the container's own steps (parse → modality inputs → bundle.predict)."""
    degraded = DegradedLog()
    if "rejected" in inputs:  # a table row that could not be read (readers/table.py): named, costs this patient
        degraded("table", inputs["rejected"], f"no prediction for {case_id}")
        return {"case_id": case_id, task.output_kind: "", "risk": "", "used": "", "status": f"failed: {inputs['rejected']}"}
    raw = {m: _read_json(inputs[m], m, degraded) for m in ("clinical", "rna")}
    case = Case(task=task, slides=inputs["slides"], mri=inputs["mri"], clinical=raw["clinical"], rna=raw["rna"],
                case_id=case_id, slide_embeddings=inputs.get("slide_embeddings", []))
    row: dict[str, Any] = {"case_id": case_id, task.output_kind: "", "risk": "", "used": "", "status": "ok"}
    try:
        record = parse_clinical_record(case, bundle.clinical_schema, degraded) if "clinical" in bundle.modalities \
            else None
        result = bundle.predict(modality_inputs(case, bundle, record, degraded, model_root, None, device))
        if not (math.isfinite(result.value) and math.isfinite(result.risk)):
            raise ValueError(f"non-finite prediction {result.value}")
        row.update({task.output_kind: result.value, "risk": result.risk, "used": "+".join(result.used)})
        try:
            row.update(survival_columns(bundle, task, result))
        except Exception as exc:  # noqa: BLE001 - a damaged S(t) curve costs its columns, never the months
            degraded("survival curve", f"{type(exc).__name__}: {exc}", "no S(t) or median for this patient")
        if degraded.entries:
            row["status"] = "degraded: " + ", ".join(sorted({e["stage"] for e in degraded.entries}))
    except Exception as exc:  # noqa: BLE001 - one patient's failure never loses the others
        degraded("model", f"{type(exc).__name__}: {exc}", f"no prediction for {case_id}")
        row["status"] = f"failed: {type(exc).__name__}: {exc}"
    return row


def survival_columns(bundle: Any, task: Any, result: Any) -> dict[str, Any]:
    """Survival bundles: S(t) at the bundle's horizons (`S(24 months)`), `median_months` (empty where the
    curve stays above 0.5) and `months_past_follow_up` (yes / no: the value lies past the longest follow-up in
    training, an extrapolation; unknown for bundles exported before the follow-up was stored)."""
    from chimera_surv.meaning import describe

    if task.output_kind != "months":
        return {}
    said = describe(bundle, result.value, result.risk, result.used)
    columns: dict[str, Any] = dict(said["survival"]) if isinstance(said["survival"], dict) else {}
    columns["median_months"] = "" if said.get("median_months") is None else said["median_months"]
    past = said.get("past_follow_up")  # meaning.describe decides it, once for every output
    columns["months_past_follow_up"] = "unknown" if past is None else ("yes" if past else "no")
    return columns


def _read_json(value: Any, modality: str, degraded: DegradedLog) -> Any:
    """A JSON file's content (folder input) or the value itself (CSV input); unreadable → None + DEGRADED."""
    if not isinstance(value, Path):
        return value
    try:
        return json.loads(value.read_text())
    except (OSError, ValueError) as exc:
        degraded(modality, f"{value.name}: {type(exc).__name__}: {exc}", f"{modality} treated as missing")
        return None


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(rows, indent=1) + "\n")
        return
    with open(path, "w", newline="") as handle:
        # every row's columns (a failed patient has no survival columns), in first-seen order
        fields = list(dict.fromkeys(k for row in rows for k in row)) or ["case_id"]
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)


def predict_cohort(bundle_dir: Path, source: Path, out: Path | None = None, id_column: str = "case_id",
                   device: str | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """Predict every patient of `source` (folder or CSV) with the bundle in `bundle_dir`; returns (file, rows)."""
    from chimera_surv.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    if bundle is None:
        raise FileNotFoundError(f"no bundle.json in {bundle_dir}")
    task = bundle_task(bundle)
    if source.is_dir():
        cases = folder_cases(source)
    elif source.suffix.lower() in (".csv", ".tsv", ".txt", ".parquet", ".pq"):
        cases = csv_cases(source, bundle, id_column)
    else:
        raise ValueError(f"INPUT must be a folder or a table (.csv, .tsv, .parquet), got {source}")
    if not cases:
        raise ValueError(f"no patient found in {source} (folders with *_CD.json / *_RNA.json, "
                         "clinical_data/<id>.json, or CSV rows)")
    model_root = bundle_dir.resolve().parent  # encoders live next to the bundles (model/encoders)
    rows = [predict_one(bundle, task, case_id, inputs, model_root, device) for case_id, inputs in cases]
    path = out or Path(task.output_file)
    write_rows(path, rows)
    return path, rows


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m chimera_surv.predict_cohort", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="bundle folder (bundle.json + weights.safetensors)")
    parser.add_argument("input", type=Path, help="a folder of patient folders, or a CSV with one row per patient")
    parser.add_argument("--out", type=Path, default=None, help="output file (default: the config's output_file)")
    parser.add_argument("--id-column", default="case_id", help="the CSV column holding the patient id")
    parser.add_argument("--device", default=None)
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from chimera_surv.bundle import BundleError  # numpy only; a broken bundle is named, one line

    return run_cli(lambda: _run(args), user_errors=(UserError, BundleError, FileNotFoundError, NotADirectoryError,
                                                    PermissionError, ValueError), debug=args.debug)


def _run(args: argparse.Namespace) -> int:
    # Cheap checks before the bundle loads (torch: seconds): a typo is named at once.
    require_path(args.bundle, "BUNDLE", "dir")
    require_path(args.bundle / "bundle.json", "BUNDLE (bundle.json)", "file")
    require_path(args.input, "INPUT")
    if args.input.is_file() and args.input.suffix.lower() in (".csv", ".tsv", ".txt"):
        require_columns(args.input, [args.id_column], "--id-column")
    if args.out is not None and args.out.is_dir():
        raise UserError(f"--out: {args.out} is a folder; give a file (.csv or .json)")
    path, rows = predict_cohort(args.bundle, args.input, args.out, args.id_column, args.device)
    done = sum(not str(r["status"]).startswith("failed") for r in rows)
    print(f"{done}/{len(rows)} patients predicted → {path}")
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
