"""The table route (train/table.py): a cohort as one CSV/Parquet row per patient trains like the folder route."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chimera_surv.features import FeatureRecipe
from train.__main__ import Run
from train.config import load_config
from train.h5features import write_h5
from train.table import infer_schema, predict_table, roles_of, to_folder_layout, train_table

SMALL = {"protocol": {"folds": 3, "members": 2, "bootstrap": 20, "cohort_holdout": False},
         "auto": {"candidates": {"coxnet": {"family": "coxnet"},
                                 "clinical_ridge": {"family": "ridge", "modalities": ["clinical"]}},
                  "ensembles": [], "backbone_residual": False, "inner_folds": 3}}
ROLES = {"id": "case_id", "time": "time", "event": "event", "label": None, "cohort": None}


@pytest.fixture(scope="module")
def gbsg2() -> pd.DataFrame:
    from sksurv.datasets import load_gbsg2

    X, y = load_gbsg2()
    frame = X.assign(time=y["time"] / 30.4375, event=y["cens"].astype(int))  # days → months
    frame.index = [f"p{i:03d}" for i in range(len(frame))]
    return frame.iloc[:180].rename_axis("case_id").reset_index()


def _cv_metrics(work: Path) -> dict[str, float]:
    return {p.stem: json.loads(p.read_text())["metric"] for p in sorted((work / "cv" / "model").glob("*.json"))}


def test_dataframe_to_bundle_report_and_predictions(gbsg2: pd.DataFrame, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bundle, report = train_table(gbsg2.iloc[:150], work_dir=tmp_path / "run", out=tmp_path / "bundle", config=SMALL)
    assert (bundle / "bundle.json").is_file() and report is not None and report.is_file()
    printed = capsys.readouterr().out
    assert "schema inferred" in printed and (tmp_path / "run" / "inferred_schema.json").is_file()
    schema = json.loads((tmp_path / "run" / "inferred_schema.json").read_text())
    assert schema["features"]["horTh"]["type"] == "categorical" and schema["features"]["age"]["type"] == "numeric"
    assert {"time", "event"}.isdisjoint(schema["features"]) and "case_id" in schema["ignore_keys"]
    preds = predict_table(bundle, gbsg2.iloc[150:160].drop(columns=["time", "event"]))
    assert list(preds["case_id"]) == list(gbsg2["case_id"].iloc[150:160])
    assert (preds["status"] == "ok").all() and np.isfinite(preds["months"].astype(float)).all()
    assert preds["risk"].astype(float).std() > 0  # the patients are told apart


def test_table_route_equals_folder_route_on_the_same_folds(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    schema_path = tmp_path / "schema.json"
    schema_path.write_text(json.dumps(infer_schema(gbsg2, ROLES)))
    table = tmp_path / "cohort.csv"
    gbsg2.to_csv(table, index=False)
    base = {**SMALL, "task": "survival", "schema": str(schema_path)}
    table_run = Run(load_config({**base, "work_dir": str(tmp_path / "t"), "cohort": {"table": str(table)}}))
    labels = to_folder_layout(gbsg2, tmp_path / "folders", ROLES)
    folder_run = Run(load_config({**base, "work_dir": str(tmp_path / "f"),
                                  "cohort": {"root": str(tmp_path / "folders"), "labels": {"csv": str(labels)}}}))
    assert [p.case_id for p in table_run.patients] == [p.case_id for p in folder_run.patients]
    assert [p.time for p in table_run.patients] == pytest.approx([p.time for p in folder_run.patients])
    table_run.cv()
    folder_run.cv()
    assert _cv_metrics(tmp_path / "t") == pytest.approx(_cv_metrics(tmp_path / "f"), abs=1e-12)
    assert len(_cv_metrics(tmp_path / "t")) == 3


def test_a_given_schema_decides_the_types(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    schema = infer_schema(gbsg2, ROLES)
    schema["features"]["pnodes"] = {"type": "categorical", "categories": ["1", "2", "3"]}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    gbsg2.to_parquet(tmp_path / "cohort.parquet")
    run = Run(load_config({**SMALL, "task": "survival", "schema": str(tmp_path / "schema.json"),
                           "work_dir": str(tmp_path / "w"), "cohort": {"table": str(tmp_path / "cohort.parquet")}}))
    records = run.arrays().records
    values = {r.values["pnodes"] for r in records}
    assert values <= {"1", "2", "3", None} and None in values  # categorical now: 4+ nodes are unknown categories


def test_missing_column_and_duplicate_ids_are_named(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no column 'months' for `cohort.time`"):
        train_table(gbsg2, work_dir=tmp_path / "a", time="months", config=SMALL)
    twice = pd.concat([gbsg2.iloc[:3], gbsg2.iloc[:1]])
    with pytest.raises(ValueError, match=r"the DataFrame's id column 'case_id' repeats 1 id\(s\), e.g. 'p000'"):
        train_table(twice, work_dir=tmp_path / "b", config=SMALL)
    # a CSV in a config is refused too (a new user's two-eyes table trained on the first eye of each patient)
    pd.concat([gbsg2, gbsg2.iloc[:2]]).to_csv(tmp_path / "twice.csv", index=False)
    with pytest.raises(ValueError, match=r"twice.csv: id column 'case_id' repeats 2 id\(s\), e.g. 'p000', 'p001'"):
        Run(load_config({**SMALL, "task": "survival", "work_dir": str(tmp_path / "c"),
                         "cohort": {"table": str(tmp_path / "twice.csv")}}))


def test_unlabelled_rows_are_left_out_with_a_count(gbsg2: pd.DataFrame, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    frame = gbsg2.copy()
    frame.loc[:4, "time"] = np.nan
    frame.to_csv(tmp_path / "c.csv", index=False)
    run = Run(load_config({**SMALL, "task": "survival", "work_dir": str(tmp_path / "w"),
                           "cohort": {"table": str(tmp_path / "c.csv")}}))
    assert len(run.patients) == len(frame) - 5
    assert "5 row(s) without a label left out" in capsys.readouterr().out


def test_rna_table_and_h5_slide_folder(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = gbsg2.iloc[:60]
    genes = pd.DataFrame(rng.poisson(50, (60, 5)), columns=[f"G{i}" for i in range(5)])
    genes.insert(0, "case_id", frame["case_id"].to_numpy())
    genes.to_csv(tmp_path / "genes.csv", index=False)
    recipe = FeatureRecipe(encoder="test-tiny", target_mpp=0.5, patch_size=224)
    for case_id in frame["case_id"].iloc[:50]:  # ten patients have no slide features: missing modality
        write_h5(tmp_path / "h5" / f"{case_id}_slide1.h5", rng.standard_normal((7, 64)),
                 rng.integers(0, 9000, (7, 2)), recipe, 0.25, f"{case_id}_slide1")
    frame.to_csv(tmp_path / "c.csv", index=False)
    cohort = {"table": str(tmp_path / "c.csv"), "rna_table": str(tmp_path / "genes.csv"),
              "slides_h5": str(tmp_path / "h5")}
    config = {**SMALL, "task": "survival", "work_dir": str(tmp_path / "w"), "cohort": cohort,
              "recipe": {"encoder": "test-tiny", "target_mpp": 0.5, "patch_size": 224}}
    run = Run(load_config(config))
    assert run.modalities == ["wsi", "clinical", "rna"] and run.genes == [f"G{i}" for i in range(5)]
    run.extract()
    data = run.arrays()
    assert int(data.raw_present("wsi").sum()) == 50 and data.bags[0].shape == (7, 64)
    assert np.array_equal(data.rna[0], genes.iloc[0, 1:].to_numpy(np.float32))
    # features of another scale are refused, naming the file and the field
    bad = FeatureRecipe(encoder="test-tiny", target_mpp=1.0, patch_size=224)
    write_h5(tmp_path / "h5" / f"{frame['case_id'].iloc[55]}_x.h5", rng.standard_normal((3, 64)),
             rng.integers(0, 9000, (3, 2)), bad, 0.25, "x")
    with pytest.raises(ValueError, match=r"_x\.h5: target_mpp: patches at 1 µm/px, the recipe uses 0.5"):
        Run(load_config({**config, "work_dir": str(tmp_path / "w2")})).extract()


def test_roles_for_a_binary_task() -> None:
    assert roles_of({"label": "brs3", "id": "pid"}, survival=False) == {
        "id": "pid", "time": None, "event": None, "label": "brs3", "cohort": None}


def _embeddings(frame: pd.DataFrame, folder: Path, encoder: str = "titan", missing: int = 10, dim: int = 12) -> None:
    """Two slides per patient, each a noisy copy of a vector that carries the patient's risk (faster events)."""
    rng = np.random.default_rng(1)
    signal = -np.log1p(frame["time"].to_numpy()) * frame["event"].to_numpy()
    folder.mkdir(parents=True, exist_ok=True)
    import h5py

    for k, (case_id, s) in enumerate(zip(frame["case_id"], signal)):
        if k < missing:
            continue
        for slide in (1, 2):
            vector = np.concatenate([[s], rng.standard_normal(dim - 1)]) + 0.3 * rng.standard_normal(dim)
            if slide == 1:
                with h5py.File(folder / f"{case_id}_s{slide}.h5", "w") as handle:
                    handle.create_dataset("features", data=vector[None].astype(np.float32))
                    handle.attrs["encoder"] = encoder
            else:
                np.save(folder / f"{case_id}_s{slide}.npy", vector.astype(np.float32))
                (folder / f"{case_id}_s{slide}.json").write_text(json.dumps({"encoder": encoder}))


def test_slide_embeddings_train_predict_and_are_checked(gbsg2: pd.DataFrame, tmp_path: Path, caplog) -> None:
    from chimera_surv.predict_cohort import predict_cohort

    frame = gbsg2.iloc[:120]
    _embeddings(frame, tmp_path / "emb")
    bundle, _ = train_table(frame, work_dir=tmp_path / "run", out=tmp_path / "bundle", config=SMALL,
                            slide_embeddings=tmp_path / "emb", steps=("fit", "cv", "export"))
    doc = json.loads((bundle / "bundle.json").read_text())
    assert doc["modalities"] == ["clinical", "slide_embedding"]
    names = doc["members"][0]["preprocessing"]["slide_embedding"]["names"]
    assert names[0] == "titan:0" and len(names) == 12  # the recipe: encoder and width
    # new patients in predict_cohort's folder layout: with embeddings, without, and of another encoder
    new = gbsg2.iloc[150:153]
    cohort = tmp_path / "new"
    for kind, (_, row) in zip(("with", "without", "other"), new.iterrows()):
        folder = cohort / row["case_id"]
        folder.mkdir(parents=True)
        (folder / f"{row['case_id']}_CD.json").write_text(json.dumps(
            {k: (v.item() if hasattr(v, "item") else v) for k, v in row.drop(["case_id", "time", "event"]).items()}))
        if kind != "without":
            _embeddings(new[new["case_id"] == row["case_id"]], folder / "features" / "slide_embeddings",
                        encoder="titan" if kind == "with" else "prism", missing=0)
    with caplog.at_level("WARNING"):
        _, rows = predict_cohort(bundle, cohort, tmp_path / "preds.csv")
    used = {r["case_id"]: r["used"] for r in rows}
    ids = list(new["case_id"])
    assert used[ids[0]] == "clinical+slide_embedding" and used[ids[1]] == used[ids[2]] == "clinical"
    assert all(math.isfinite(float(r["risk"])) for r in rows)
    assert any("embedding of 'prism', the bundle uses 'titan'" in line and "encoder:" in line and
               "slide_embedding" in line for line in caplog.text.splitlines())


def test_slide_embeddings_feed_a_network(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    from chimera_surv.bundle import ModalityInputs, load_bundle

    frame = gbsg2.iloc[:80]
    _embeddings(frame, tmp_path / "emb")
    config = {**SMALL, "model": {}, "train": {"epochs": 2, "seeds": 1, "min_epochs": 1}}
    bundle, _ = train_table(frame, work_dir=tmp_path / "run", out=tmp_path / "bundle", config=config,
                            slide_embeddings=tmp_path / "emb", steps=("fit", "export"))
    loaded = load_bundle(bundle)
    assert loaded.modalities == ["clinical", "slide_embedding"] and loaded.members[0].__class__.__name__ == "Member"
    vector = np.ones(12, np.float32)
    with_embedding = loaded.predict(ModalityInputs(slide_embedding=vector)).risk
    assert math.isfinite(with_embedding)
    assert loaded.predict(ModalityInputs(slide_embedding=vector * -3)).risk != with_embedding


def test_an_event_code_it_cannot_read_is_named_not_read_as_censored(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    frame = gbsg2.iloc[:20].assign(event=["dead" if i == 3 else i % 2 for i in range(20)])
    frame.to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(ValueError, match=r"patient p003: event 'dead' in column 'event' is not 1/0"):
        Run(load_config({**SMALL, "task": "survival", "work_dir": str(tmp_path / "w"),
                         "cohort": {"table": str(tmp_path / "c.csv")}}))


@pytest.mark.parametrize(("column", "unit"), [("week", "weeks"), ("os_days", "days"), ("Years_to_event", "years"),
                                              ("time", None), ("survival_months", None), ("Time_to_prog_or_FUend", None),
                                              ("time_to_follow-up/BCR", None), (None, None)])
def test_a_time_column_named_in_another_unit_gets_one_note(column, unit):
    from train.table import time_unit_note

    note = time_unit_note(column)
    if unit is None:
        assert note is None
    else:
        assert note.startswith("NOTE time column") and f"looks like {unit}" in note and "months" in note


def test_the_default_bundle_folder_sits_beside_the_config_file(gbsg2: pd.DataFrame, tmp_path: Path,
                                                              monkeypatch) -> None:
    """Like `work_dir` and the table, the default `out` is relative to the config file, not the current folder
    (a new user running from another folder found the bundle in that folder)."""
    folder = tmp_path / "study"
    folder.mkdir()
    gbsg2.to_csv(folder / "cohort.csv", index=False)
    (folder / "config.yaml").write_text("task: survival\ncohort: {table: cohort.csv}\nwork_dir: work\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    run = Run(load_config(folder / "config.yaml"))
    assert run.out == (folder / "model" / "cohort-survival").resolve()
    assert run.work == (folder / "work").resolve()


def test_anchors_step_fits_scikit_survival_on_the_runs_own_folds(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    """`python -m train anchors`: every CV split of the run, auto's C recomputed from its stored risks, and the
    CoxPH anchor equal to CoxPH fitted here independently (one-hot factors, standardised numbers) on fold 0."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.metrics import concordance_index_censored
    from sksurv.util import Surv

    schema = infer_schema(gbsg2, ROLES)
    schema_path = tmp_path / "schema.json"
    schema_path.write_text(json.dumps(schema))
    table = tmp_path / "cohort.csv"
    gbsg2.to_csv(table, index=False)
    run = Run(load_config({**SMALL, "task": "survival", "schema": str(schema_path), "work_dir": str(tmp_path / "t"),
                           "cohort": {"table": str(table)}}))
    run.anchors()
    doc = json.loads((tmp_path / "t" / "anchors" / "anchors.json").read_text())
    records = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "t" / "cv" / "model").glob("*.json")}
    assert set(doc["splits"]) == set(records) and len(records) == 3
    for name, split in doc["splits"].items():
        assert split["auto"] == pytest.approx(records[name]["metric"], abs=1e-4)
        assert set(split) >= {"coxph_clinical", "coxnet", "rsf", "gbsa", "anchor_average"}
    summary = doc["summary"]["cv"]
    assert summary["n_splits"] == 3 and 0 <= summary["auto_ahead_on"] <= 3
    paired = [s["auto"] - s[summary["best_anchor"]] for s in doc["splits"].values()]
    assert summary["auto_ahead_on"] == sum(d > 0 for d in paired)
    assert summary["paired_sd"] == pytest.approx(np.std(paired, ddof=1), abs=1e-4)
    # the report picks the anchors up (and a later `anchors` step replaces its section)
    run.report()
    text = (tmp_path / "t" / "report" / "report.md").read_text()
    assert "## Against scikit-survival on the same splits" in text
    assert f"Auto − the best anchor ({summary['best_anchor']}): {summary['auto_minus_best_anchor']:+.3f}" in text
    # the oracle: CoxPH (alpha 0.1) on the same 8 columns, encoded here, on fold 0's training part
    record = records["r0f0"]
    frame = gbsg2.set_index("case_id")
    test = frame.index.isin(record["case_ids"])
    numeric = [k for k, f in schema["features"].items() if f["type"] != "categorical"]
    binary_true = {k: {str(t).lower() for t in f.get("true", [])} for k, f in schema["features"].items()
                   if f["type"] == "binary"}
    columns = {}
    for key in numeric:
        values = frame[key].map(lambda v, k=key: float(str(v).lower() in binary_true[k]) if k in binary_true
                                else float(v)).to_numpy()
        columns[key] = (values - values[~test].mean()) / values[~test].std()
    factors = [k for k in schema["features"] if k not in numeric]
    X = pd.concat([pd.DataFrame(columns, index=frame.index),
                   pd.get_dummies(frame[factors].astype(str), drop_first=True).astype(float)], axis=1).to_numpy()
    y = Surv.from_arrays(frame["event"].astype(bool).to_numpy(), frame["time"].to_numpy())
    risk = CoxPHSurvivalAnalysis(alpha=0.1).fit(X[~test], y[~test]).predict(X[test])
    expected = concordance_index_censored(y["event"][test], y["time"][test], risk)[0]
    assert doc["splits"]["r0f0"]["coxph_clinical"] == pytest.approx(expected, abs=1e-4)


def test_inferred_schema_leaves_out_constant_columns_and_reads_placeholders_as_missing(capsys) -> None:
    """Seen in a new user's SurvSet runs: a column with one value for all 541 patients kept as a feature, and
    SurvSet's literal "missing" turned into a category of its own."""
    from chimera_surv.readers.clinical import ClinicalSchema, parse_clinical

    frame = pd.DataFrame({"case_id": ["a", "b", "c", "d"], "time": [1.0, 2.0, 3.0, 4.0], "event": [1, 0, 1, 0],
                          "rt": ["Y", "Y", "Y", "Y"], "kind": ["flame", "scald", "missing", "flame"],
                          "age": [50, 60, 70, 80]})
    schema = infer_schema(frame, ROLES)
    assert "rt" not in schema["features"] and "rt" in schema["ignore_keys"]
    assert "left out rt: the same value for every patient" in capsys.readouterr().out
    kind = schema["features"]["kind"]
    assert kind["categories"] == ["flame", "scald"] and kind["extra_missing_tokens"] == ["missing"]
    parsed = ClinicalSchema.from_dict(schema)
    assert parse_clinical({"kind": "missing", "age": 55}, parsed).values["kind"] is None
    assert parse_clinical({"kind": "scald", "age": 55}, parsed).values["kind"] == "scald"


def test_a_numeric_column_with_unknown_among_its_numbers_stays_numeric() -> None:
    """Found by a table-route sweep: `tsize` with two 'unknown' values failed the numeric test, then had too many
    distinct texts for a category, and was left out without a word."""
    from chimera_surv.readers.clinical import ClinicalSchema, parse_clinical

    sizes = [12.0, 25.0, "unknown", 31.0, 18.0, "?", 40.0, 22.0, 35.0, 15.0, 28.0, 50.0]
    frame = pd.DataFrame({"case_id": [f"p{i}" for i in range(12)], "time": np.arange(1.0, 13.0),
                          "event": [1, 0] * 6, "tsize": sizes})
    spec = infer_schema(frame, ROLES)["features"]["tsize"]
    assert spec["type"] == "numeric" and spec["extra_missing_tokens"] == ["?", "unknown"]
    parsed = ClinicalSchema.from_dict(infer_schema(frame, ROLES))
    assert parse_clinical({"tsize": "unknown"}, parsed).values["tsize"] is None
    assert parse_clinical({"tsize": 31}, parsed).values["tsize"] == 31.0


def test_a_rerun_prints_the_inferred_schema_once(gbsg2: pd.DataFrame, tmp_path: Path, capsys) -> None:
    from train.table import prepare_config

    gbsg2.to_csv(tmp_path / "cohort.csv", index=False)
    for _ in range(2):
        prepare_config({"cohort": {"table": "cohort.csv"}, "work_dir": "run"}, tmp_path, survival=True)
    first, second = capsys.readouterr().out.split("schema inferred")[1:]
    assert "save and edit it" in first and "as before" in second and "save and edit it" not in second
