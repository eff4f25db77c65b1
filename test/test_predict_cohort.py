"""Generic (non-CHIMERA) survival and binary tasks: config → bundle → `python -m chimera_surv.predict_cohort`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from chimera_surv.bundle import load_bundle
from chimera_surv.generic import generic_task, task_from_config
from chimera_surv.predict_cohort import main as predict_main
from chimera_surv.predict_cohort import predict_cohort
from chimera_surv.tasks import TASKS

TRAIN = {"epochs": 4, "batch_size": 16, "lr": 0.01, "patience": 2, "min_epochs": 1, "seeds": 1}
GENES = [f"G{i}" for i in range(8)]


def test_task_from_config_keeps_chimera_fixed_and_generic_apart():
    assert task_from_config({"task": 3}) is TASKS[3]
    task = task_from_config({"task": "survival", "task_name": "my-cohort", "output_file": "risk.csv",
                             "modalities": ["clinical", "rna"]})
    assert (task.id, task.name, task.output_file, task.output_kind) == (0, "my-cohort", "risk.csv", "months")
    assert task.id not in TASKS and task.modalities == ("clinical", "rna")
    assert generic_task("binary").output_file == "cohort-binary-predictions.csv"
    with pytest.raises(ValueError, match="fixed folder"):
        task_from_config({"task": 2, "output_file": "x.csv"})
    with pytest.raises(ValueError, match="pose as one"):
        task_from_config({"task": "survival", "task_name": "nmibc-recurrence"})
    with pytest.raises(ValueError, match="CHIMERA output file"):
        task_from_config({"task": "binary", "output_file": "brs-probability.json"})
    with pytest.raises(ValueError, match="survival / binary"):
        task_from_config({"task": "regression"})


def _cohort(root: Path, kind: str, n: int = 36) -> None:
    rng = np.random.default_rng(5)
    schema = {"name": "my", "features": {"ki67": {"type": "numeric", "range": [0, 100]},
                                         "grade": {"type": "categorical", "categories": ["low", "high"]}},
              "labels": {"time": "os", "event": "dead", "event_true": ["1"]} if kind == "survival"
              else {"target": "response", "positive": ["yes"]}}
    (root / "schema.json").write_text(json.dumps(schema))
    for k in range(n):
        z = rng.normal()
        doc = {"ki67": float(np.clip(40 + 15 * z, 0, 100)), "grade": "high" if z > 0 else "low"}
        if kind == "survival":
            doc.update(os=float(rng.exponential(30 * np.exp(-z)) + 1), dead=int(rng.random() < 0.7))
        else:
            doc["response"] = "yes" if z + 0.5 * rng.normal() > 0 else "no"
        case = root / "cohort" / "data" / f"C{k:03d}"
        case.mkdir(parents=True)
        (case / f"C{k:03d}_CD.json").write_text(json.dumps(doc))
        (case / f"C{k:03d}_RNA.json").write_text(json.dumps({g: float(np.exp(z * (i < 2) + rng.normal()))
                                                             for i, g in enumerate(GENES)}))


@pytest.mark.parametrize("kind", ["survival", "binary"])
def test_generic_task_trains_and_predicts_a_folder_and_a_csv(tmp_path, monkeypatch, kind):
    from train.__main__ import main as train_main

    _cohort(tmp_path, kind)
    (tmp_path / "genes.json").write_text(json.dumps(GENES))
    (tmp_path / "config.yaml").write_text(
        f"task: {kind}\ntask_name: my-{kind}\noutput_file: my-{kind}-risk.csv\nschema: schema.json\n"
        "genes: genes.json\nmodalities: [clinical, rna]\ncohort: {root: cohort}\nwork_dir: work\nout: bundle\n"
        "protocol: {folds: 2, repeats: 1, inner_val: 0.25, bootstrap: 5, members: 2, cohort_holdout: false}\n"
        f"train: {json.dumps(TRAIN)}\n")
    assert train_main([str(tmp_path / "config.yaml"), "--steps", "fit", "export"]) == 0
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.task_id == 0 and bundle.meta["task"] == {
        "kind": kind, "name": f"my-{kind}", "output_file": f"my-{kind}-risk.csv",
        "output_kind": "months" if kind == "survival" else "probability"}

    # A folder of patients (one with broken files: the documented degraded path, all values imputed), output
    # named by the config in the working folder.
    (tmp_path / "cohort" / "data" / "EMPTY").mkdir()
    (tmp_path / "cohort" / "data" / "EMPTY" / "EMPTY_CD.json").write_text("{}")
    (tmp_path / "cohort" / "data" / "EMPTY" / "EMPTY_RNA.json").write_text("{not json")
    monkeypatch.chdir(tmp_path)
    assert predict_main(["bundle", "cohort"]) == 0
    column = "months" if kind == "survival" else "probability"
    with open(tmp_path / f"my-{kind}-risk.csv") as handle:
        rows = {r["case_id"]: r for r in csv.DictReader(handle)}
    assert len(rows) == 37 and rows["EMPTY"]["status"] == "degraded: clinical, rna"
    assert rows["EMPTY"]["used"] == "clinical"
    values = np.array([float(r[column]) for r in rows.values()])
    assert np.isfinite(values).all() and (values > 0).all()
    if kind == "binary":
        assert (values <= 1).all()
    assert {r["used"] for k, r in rows.items() if k != "EMPTY"} == {"clinical+rna"}

    # The same patients as a CSV (schema columns + gene columns) give the same values.
    table = tmp_path / "table.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "ki67", "grade", *GENES])
        writer.writeheader()
        for case in sorted((tmp_path / "cohort" / "data").glob("C*"))[:5]:
            doc = json.loads((case / f"{case.name}_CD.json").read_text())
            writer.writerow({"id": case.name, "ki67": doc["ki67"], "grade": doc["grade"],
                             **json.loads((case / f"{case.name}_RNA.json").read_text())})
    path, again = predict_cohort(tmp_path / "bundle", table, tmp_path / "out" / "table.json", id_column="id")
    assert json.loads(path.read_text()) == again and len(again) == 5
    for row in again:
        assert row["status"] == "ok"
        assert row[column] == pytest.approx(float(rows[row["case_id"]][column]), rel=1e-6)
    with pytest.raises(ValueError, match="no id column"):
        predict_cohort(tmp_path / "bundle", table, tmp_path / "x.csv")
    if kind == "survival":  # a damaged S(t) curve costs its columns, never the months
        doc = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
        doc["meta"]["survival_curve"]["risk_range"] = [2.0, 1.0]
        (tmp_path / "bundle" / "bundle.json").write_text(json.dumps(doc))
        _, damaged = predict_cohort(tmp_path / "bundle", table, tmp_path / "out" / "damaged.json", id_column="id")
        for row in damaged:
            assert row["status"] == "degraded: survival curve" and "median_months" not in row
            assert row[column] == pytest.approx(float(rows[row["case_id"]][column]), rel=1e-6)
