"""The table route: a cohort given as one CSV/Parquet row per patient instead of the CHIMERA folder layout.

Why: every scikit-survival or lifelines user starts from a table; turning it into one folder and one JSON per
patient was the barrier. The rows become the same `Patient` records the folder route builds (clinical = the row's
clinical columns as the clinical JSON would hold them, RNA = the patient's row of a second wide table, slide bags
= `.h5` patch-feature files named by the id), so folds, `auto`, the report and the bundle are unchanged.

Column types come from the schema when the config names one; otherwise they are inferred from the table
(`infer_schema`), written to `<work_dir>/inferred_schema.json` and printed, so the user can save, edit and name it.

    from train.table import train_table
    bundle, report = train_table(df, id="pid", time="months", event="relapse", work_dir="runs/my", out="model/my")
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from train.cohort import Patient, _is_true

log = logging.getLogger("train.table")
PLACEHOLDER_WORDS = frozenset({"missing", "unknown", "?"})  # a categorical value that means "not recorded"
MAX_CATEGORIES = 30  # a text column with more distinct values is left out of the inferred schema (ids, free text)
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")


def read_table(path: Path | str, id_column: str | None = None) -> pd.DataFrame:
    """A CSV/TSV (chimera_surv.readers.table: encodings, delimiters, bad rows skipped and named) or Parquet file
    as a DataFrame. CSV cells are text: a column whose every filled cell is a number becomes numeric (never the
    id column, so `007` stays `007`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: a table must be .csv, .tsv or .parquet, got {suffix or 'no suffix'}")
    # training refuses what prediction may skip: a patient on both sides of a fold inflates the CV
    if suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(path)  # typed already (categories, ordered levels, numbers)
        if id_column in frame.columns:
            _refuse_repeated_ids(f"table {path}: id column {id_column!r}", _repeated(frame[id_column]))
        return frame
    from chimera_surv.readers.table import read_table as robust_read

    frame, problems = robust_read(path, id_column)
    repeated = [(line, row_id) for line, row_id, cause in frame.attrs.get("rejected", [])
                if cause.startswith("repeats the id")]
    if repeated:
        _refuse_repeated_ids(f"table {path}: id column {id_column!r}", [i for _, i in repeated],
                             f" (line {repeated[0][0]})")
    for problem in problems:
        print(problem)
        log.warning("%s", problem)
    frame = frame.reset_index(drop=True)
    for column in frame.columns:
        if column == id_column:
            continue
        numbers = pd.to_numeric(frame[column], errors="coerce")
        if numbers.notna().sum() == frame[column].notna().sum():
            frame[column] = numbers
    return frame


def _plain(value: Any) -> Any:
    """A cell as the clinical JSON would carry it: None for missing, Python numbers and text."""
    if value is None:
        return None
    if isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def _column_spec(series: pd.Series) -> dict[str, Any] | None:
    """One column's schema entry, or None when the column cannot be a feature (all missing, id-like text)."""
    values = series.dropna()
    if values.empty:
        return None
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = [str(c) for c in series.cat.categories]
        if series.cat.ordered:
            return {"type": "ordinal", "levels": {c: i for i, c in enumerate(categories)},
                    "description": "inferred: ordered categories"}
        return {"type": "categorical", "categories": categories, "description": "inferred"}
    if pd.api.types.is_bool_dtype(series):
        return {"type": "binary", "description": "inferred: true/false"}
    text = values.astype(str).str.strip()
    placeholders = sorted({t for t in text.unique().tolist() if t.lower() in PLACEHOLDER_WORDS})
    # numbers with "unknown" among them are numbers (the placeholder read as missing), not a text column
    numbers = pd.to_numeric(values[~text.isin(placeholders)], errors="coerce")
    if numbers.notna().all() and len(numbers):
        distinct = set(numbers.unique().tolist())
        extra = {"extra_missing_tokens": placeholders} if placeholders else {}
        read = f"; {', '.join(map(repr, placeholders))} read as missing" if placeholders else ""
        if distinct <= {0, 1}:
            return {"type": "binary", "description": "inferred: 0/1" + read, **extra}
        return {"type": "numeric", "description": f"inferred: observed {numbers.min():g} to {numbers.max():g} "
                                                  "(unit not known: state it here)" + read, **extra}
    distinct = sorted(t for t in text.unique().tolist() if t not in placeholders)
    if not distinct or len(distinct) > min(MAX_CATEGORIES, max(2, len(values) // 2)):
        return None
    lowered = {d.lower() for d in distinct}
    if placeholders:  # SurvSet and registries write "missing"/"unknown" as a value: read it as missing
        spec = _text_spec(distinct, lowered)
        return {**spec, "extra_missing_tokens": placeholders,
                "description": spec["description"] + f"; {', '.join(map(repr, placeholders))} read as missing"}
    return _text_spec(distinct, lowered)


def _text_spec(distinct: list[str], lowered: set[str]) -> dict[str, Any]:
    """A text column's entry: yes/no-like pairs are binary, anything else categorical."""
    if lowered <= {"yes", "no", "true", "false", "y", "n"} and len(lowered) == 2:
        return {"type": "binary", "true": ["yes", "true", "y"], "false": ["no", "false", "n"],
                "description": "inferred: yes/no"}
    return {"type": "categorical", "categories": distinct, "description": "inferred"}


def infer_schema(frame: pd.DataFrame, roles: dict[str, str | None], name: str = "table") -> dict[str, Any]:
    """A clinical schema (docs/training.md format) from the columns that are not the id, labels or cohort."""
    reserved = {c for c in roles.values() if c}
    features: dict[str, Any] = {}
    skipped = []
    constant = []
    for column in frame.columns:
        if column in reserved:
            continue
        series = frame[column]
        if series.notna().all() and series.astype(str).str.strip().nunique() == 1:
            constant.append(str(column))  # the same value for every patient carries nothing
            continue
        spec = _column_spec(series)
        if spec is None:
            skipped.append(str(column))
        else:
            features[str(column)] = spec
    if constant:
        print(f"schema: left out {', '.join(constant)}: the same value for every patient")
    skipped += constant
    labels = {k: roles[k] for k in ("time", "event") if roles.get(k)}
    if roles.get("label"):
        labels["target"] = roles["label"]
    schema: dict[str, Any] = {"schema_version": 1, "name": name, "source": "inferred from the table by train/table.py",
                              "features": features, "labels": labels,
                              "ignore_keys": sorted({roles[k] for k in ("id", "cohort") if roles.get(k)} |
                                                    set(skipped))}
    if not features:
        raise ValueError(f"no usable clinical column in the table (columns: {list(frame.columns)[:20]})")
    return schema


def roles_of(cohort: dict[str, Any], survival: bool) -> dict[str, str | None]:
    """The table's role → column map from the `cohort` config section."""
    return {"id": cohort.get("id") or "case_id", "time": (cohort.get("time") or "time") if survival else None,
            "event": (cohort.get("event") or "event") if survival else None,
            "label": None if survival else (cohort.get("label") or "label"), "cohort": cohort.get("cohort_column")}


def _check_columns(frame: pd.DataFrame, roles: dict[str, str | None], source: Any) -> None:
    """Every role's column is there (repeated ids are refused when the table is read: `read_table`)."""
    for role, column in roles.items():
        if column and column not in frame.columns:
            raise ValueError(f"table {source}: no column {column!r} for `cohort.{role if role != 'cohort' else 'cohort_column'}`"
                             f" (columns: {list(frame.columns)[:20]})")


def _repeated(ids: pd.Series) -> list[str]:
    text = ids.astype(str)
    return sorted(set(text[text.duplicated()]))


def _refuse_repeated_ids(what: str, repeated: list[str], where: str = "") -> None:
    """One line naming the repeated ids: `what` says whose id column (a file's, the DataFrame's)."""
    if repeated:
        raise ValueError(f"{what} repeats {len(repeated)} id(s), e.g. {', '.join(map(repr, repeated[:3]))}{where}; "
                         "keep one row per patient (docs/training.md, 'One row per patient')")


def prepare_config(config: dict[str, Any], base: Path, survival: bool) -> None:
    """Fill in what the table route can decide itself: the schema (inferred when not given, written to
    `<work_dir>/inferred_schema.json` and printed) and the modalities (clinical + whatever tables/folders exist)."""
    from train.config import resolve_path

    cohort = config["cohort"]
    if not config.get("modalities"):
        config["modalities"] = ["clinical"] + (["rna"] if cohort.get("rna_table") else []) + (
            ["wsi"] if cohort.get("slides_h5") else []) + (["slide_embedding"] if cohort.get("slide_embeddings") else [])
    if config.get("schema"):
        return
    path = resolve_path(cohort["table"], base)
    roles = roles_of(cohort, survival)
    frame = read_table(path, roles["id"])
    _check_columns(frame, roles, path)
    schema = infer_schema(frame, roles, name=path.stem)
    work = resolve_path(config["work_dir"], base)
    work.mkdir(parents=True, exist_ok=True)
    target = work / "inferred_schema.json"
    text = json.dumps(schema, indent=1) + "\n"
    if target.is_file() and target.read_text() == text:  # a rerun: the whole schema was printed the first time
        print(f"schema inferred from {path.name} as before ({len(schema['features'])} clinical columns): {target}")
    else:
        target.write_text(text)
        print(f"schema inferred from {path.name} ({len(schema['features'])} clinical columns), written to {target}:\n"
              f"{json.dumps(schema['features'])}\nsave and edit it, then name it with `schema:` in the config")
    config["schema"] = str(target)


def _features_h5(folder: Path | None, ids: list[str], key: str = "slides_h5") -> dict[str, list[Path]]:
    """id → its files: `<id>.<ext>` or `<id>_<anything>.<ext>` (Trident names files by the slide's stem); `.h5`
    for patch features, `.h5`/`.npy`/`.json` for slide embeddings (a `.npy`'s `.json` sidecar is not a slide)."""
    if folder is None:
        return {}
    if not folder.is_dir():
        raise NotADirectoryError(f"cohort.{key}: {folder} is not a folder")
    if key == "slides_h5":
        files = sorted(folder.rglob("*.h5"))
    else:
        from chimera_surv.readers.precomputed import embedding_files

        files = sorted(p for sub in sorted({folder, *(d for d in folder.rglob("*") if d.is_dir())})
                       for p in embedding_files(sub))
    found: dict[str, list[Path]] = {}
    for case_id in ids:
        mine = [p for p in files if p.stem == case_id or p.stem.startswith(case_id + "_")]
        if mine:
            found[case_id] = mine
    return found


UNIT_WORDS = {"day": "days", "week": "weeks", "wk": "weeks", "year": "years", "yr": "years"}


def time_unit_note(column: str | None) -> str | None:
    """A NOTE when the time column's name says another unit than months (`week`, `os_days`, `years`): the outputs,
    reports and S(t) horizons all say months, so they are only true for times given in months."""
    if not column:
        return None
    import re

    words = re.findall(r"[a-z]+", column.lower())
    unit = next((UNIT_WORDS[w.rstrip("s")] for w in words if w.rstrip("s") in UNIT_WORDS), None)
    if unit is None or any(w.startswith("month") for w in words):
        return None
    return (f"NOTE time column {column!r} looks like {unit}; every output, report and S(t) horizon says months "
            f"(time is read as months, docs/training.md), so convert it to months first or read 'months' as {unit}")


def table_patients(cohort: dict[str, Any], base: Path, survival: bool,
                   positive: tuple[str, ...] = ("1", "1.0")) -> list[Patient]:
    """The labelled patients of the table, sorted by id; rows without a label are dropped with a printed count."""
    from train.config import resolve_path

    path = resolve_path(cohort["table"], base)
    roles = roles_of(cohort, survival)
    frame = read_table(path, roles["id"])
    _check_columns(frame, roles, path)
    note = time_unit_note(roles["time"])
    if note:
        print(note)
    frame = frame.assign(**{roles["id"]: frame[roles["id"]].astype(str)})
    rna = _rna_rows(resolve_path(cohort.get("rna_table"), base), roles["id"])
    h5 = _features_h5(resolve_path(cohort.get("slides_h5"), base), frame[roles["id"]].tolist())
    embeddings = _features_h5(resolve_path(cohort.get("slide_embeddings"), base), frame[roles["id"]].tolist(),
                              "slide_embeddings")
    reserved = {c for c in roles.values() if c}
    patients, unlabelled = [], 0
    for row in frame.to_dict(orient="records"):
        case_id = row[roles["id"]]
        centre = _plain(row[roles["cohort"]]) if roles["cohort"] else None
        patient = Patient(case_id=case_id, cohort=str(centre if centre is not None else cohort.get(
            "default_cohort", "all")), clinical={str(k): _plain(v) for k, v in row.items() if k not in reserved},
            rna=rna.get(case_id), features_h5=h5.get(case_id, []), slide_embeddings=embeddings.get(case_id, []))
        if survival:
            time, event = _plain(row[roles["time"]]), _plain(row[roles["event"]])
            if time is None or event is None or pd.isna(pd.to_numeric(time, errors="coerce")):
                unlabelled += 1
                continue
            if float(time) < 0:
                raise ValueError(f"table {path.name}: {case_id}: negative time {time} in column {roles['time']!r}")
            patient.time, patient.event = float(time), _event(event, roles["event"], case_id, path.name)
        else:
            label = _plain(row[roles["label"]])
            if label is None:
                unlabelled += 1
                continue
            patient.label = 1 if str(label) in positive else int(_is_true(str(label)))
        patients.append(patient)
    if unlabelled:
        print(f"table {path.name}: {unlabelled} row(s) without a label left out")
    if not patients:
        raise ValueError(f"table {path}: no labelled row ({len(frame)} rows)")
    return sorted(patients, key=lambda p: p.case_id)


EVENT_WORDS = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "1.0": 1, "0.0": 0}


def _event(value: Any, column: str, case_id: str, source: str) -> int:
    """1/0, true/false, yes/no; anything else ('dead', 2) is an error naming it, never read as censored."""
    word = EVENT_WORDS.get(str(value).strip().lower())
    if word is None:
        raise ValueError(f"table {source}: patient {case_id}: event {value!r} in column {column!r} is not 1/0, "
                         "true/false or yes/no; recode it (a competing event, e.g. 2 = death from another cause: 0 "
                         "for the cause-specific hazard, 1 for any event)")
    return word


def _rna_rows(path: Path | None, id_column: str) -> dict[str, dict[str, Any]]:
    """id → {gene: value} from a wide table (the id column + one column per gene); empty cells left out."""
    if path is None:
        return {}
    frame = read_table(path, id_column)
    if id_column not in frame.columns:
        raise ValueError(f"rna_table {path}: no id column {id_column!r} (columns: {list(frame.columns)[:10]})")
    out = {}
    for row in frame.to_dict(orient="records"):
        case_id = str(row.pop(id_column))
        out[case_id] = {str(k): v for k, v in ((k, _plain(v)) for k, v in row.items()) if v is not None}
    return out


def train_table(table: pd.DataFrame | Path | str, *, work_dir: Path | str, out: Path | str | None = None,
                task: str = "survival", id: str = "case_id", time: str = "time", event: str = "event",
                label: str | None = None, cohort_column: str | None = None, rna_table: Path | str | None = None,
                slides_h5: Path | str | None = None, slide_embeddings: Path | str | None = None,
                schema: Path | str | None = None, config: dict[str, Any] | None = None,
                steps: tuple[str, ...] = ("fit", "cv", "export", "report")
                ) -> tuple[Path, Path | None]:
    """Train from a table in one call: (bundle folder, report.html or None). A DataFrame is written to
    `<work_dir>/table.parquet` first (its index becomes the id column when it has none), so this is exactly the
    `cohort.table` config route; `config` holds any other config key (docs/training.md, Config reference)."""
    run = table_run(table, work_dir=work_dir, out=out, task=task, id=id, time=time, event=event, label=label,
                    cohort_column=cohort_column, rna_table=rna_table, slides_h5=slides_h5,
                    slide_embeddings=slide_embeddings, schema=schema, config=config)
    if "wsi" in run.modalities and "extract" not in steps:
        steps = ("extract", *steps)
    results = {step: getattr(run, step)() for step in steps}
    return run.out, results.get("report")


def table_run(table: pd.DataFrame | Path | str, *, work_dir: Path | str, out: Path | str | None = None,
              task: str = "survival", id: str = "case_id", time: str = "time", event: str = "event",
              label: str | None = None, cohort_column: str | None = None, rna_table: Path | str | None = None,
              slides_h5: Path | str | None = None, slide_embeddings: Path | str | None = None,
              schema: Path | str | None = None, config: dict[str, Any] | None = None) -> Any:
    """The `Run` (train/__main__.py) of a table: train_table's arguments, no step run yet."""
    from train.__main__ import Run
    from train.config import load_config

    work = Path(work_dir).resolve()
    if isinstance(table, pd.DataFrame):
        frame = table if id in table.columns else table.rename_axis(id).reset_index()
        # named here: the parquet file written below is ours, not the user's
        _refuse_repeated_ids(f"the DataFrame's id column {id!r}", _repeated(frame[id]))
        work.mkdir(parents=True, exist_ok=True)
        table = work / "table.parquet"
        frame.to_parquet(table)
    cohort = {"table": str(Path(table).resolve()), "id": id, "cohort_column": cohort_column,
              "rna_table": str(Path(rna_table).resolve()) if rna_table else None,
              "slides_h5": str(Path(slides_h5).resolve()) if slides_h5 else None,
              "slide_embeddings": str(Path(slide_embeddings).resolve()) if slide_embeddings else None,
              **({"time": time, "event": event} if task != "binary" else {"label": label or "label"})}
    raw = {**(config or {}), "task": task, "work_dir": str(work),
           "cohort": {**((config or {}).get("cohort") or {}), **cohort}}
    if out is not None:
        raw["out"] = str(Path(out).resolve())
    if schema is not None:
        raw["schema"] = str(Path(schema).resolve())
    return Run(load_config(raw))


def predict_table(bundle_dir: Path | str, frame: pd.DataFrame, id: str = "case_id") -> pd.DataFrame:
    """Each row of `frame` predicted on its own through predict_cohort's steps: case_id, months (or probability),
    risk, used, status. Gene columns named as in the bundle's gene list are the patient's RNA."""
    from chimera_surv.bundle import load_bundle
    from chimera_surv.predict_cohort import bundle_task, predict_one

    bundle_dir = Path(bundle_dir)
    bundle = load_bundle(bundle_dir)
    if bundle is None:
        raise FileNotFoundError(f"no bundle.json in {bundle_dir}")
    task = bundle_task(bundle)
    frame = frame if id in frame.columns else frame.rename_axis(id).reset_index()
    genes = set(bundle.genes)
    rows = []
    for row in frame.to_dict(orient="records"):
        cells = {str(k): _plain(v) for k, v in row.items() if k != id}
        rna = {k: v for k, v in cells.items() if k in genes and v is not None}
        inputs = {"clinical": {k: v for k, v in cells.items() if k not in genes}, "rna": rna or None,
                  "slides": [], "mri": None}
        rows.append(predict_one(bundle, task, str(row[id]), inputs, bundle_dir.resolve().parent, None))
    return pd.DataFrame(rows)


def to_folder_layout(frame: pd.DataFrame, root: Path | str, roles: dict[str, str | None]) -> Path:
    """The same cohort in the folder route's layout (`<root>/<id>/<id>_CD.json` + `<root>/labels.csv`), for
    comparing the two routes on the same patients (test_table_route.py, benchmarks/table_route.py)."""
    root = Path(root)
    reserved = {c for c in roles.values() if c}
    label_roles = [r for r in ("time", "event", "label", "cohort") if roles.get(r)]
    lines = [",".join(["case_id", *label_roles])]
    for row in frame.to_dict(orient="records"):
        case_id = str(row[roles["id"]])
        folder = root / case_id
        folder.mkdir(parents=True, exist_ok=True)
        clinical = {str(k): _plain(v) for k, v in row.items() if k not in reserved}
        (folder / f"{case_id}_CD.json").write_text(json.dumps(clinical))
        lines.append(",".join([case_id, *(str(_plain(row[roles[r]])) for r in label_roles)]))
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"


def embedding_matrix(patients: list[Patient]) -> tuple[np.ndarray, list[str]]:
    """(n, D) mean slide embedding per patient (NaN rows: none) and the names that record the encoder; every file
    must come from the same encoder and width (a mismatch names the file and the field)."""
    from chimera_surv.readers.precomputed import embedding_names, patient_slide_embedding

    vectors: list[np.ndarray | None] = []
    names: list[str] | None = None
    for patient in patients:
        if not patient.slide_embeddings:
            vectors.append(None)
            continue
        vector, encoder = patient_slide_embedding(patient.slide_embeddings, names)
        names = names or embedding_names(encoder, len(vector))
        vectors.append(vector)
    if names is None:
        raise ValueError("no patient has a slide embedding; drop 'slide_embedding' from `modalities`")
    empty = np.full(len(names), np.nan, np.float32)
    return np.stack([v if v is not None else empty for v in vectors]), names
