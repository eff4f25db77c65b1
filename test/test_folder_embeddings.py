"""Slide embeddings in the folder route (`cohort.root`): `slide_embeddings/<id>[_*].<ext>` under the root, or the
folder `cohort.slide_embeddings` names (read as the table route reads it), train the `slide_embedding` modality."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from chimera_surv.bundle import load_bundle
from chimera_surv.predict_cohort import predict_cohort

DIM = 6
MISSING = ("C000", "C001", "C002")  # patients without an embedding file
SCHEMA = {"name": "emb", "features": {"ki67": {"type": "numeric", "range": [0, 100]}},
          "labels": {"time": "os", "event": "dead", "event_true": ["1"]}}


def _write_embedding(folder: Path, stem: str, vector: np.ndarray) -> None:
    """A `.npy` vector with its `{"encoder"}` sidecar (readers/precomputed.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{stem}.npy", vector.astype(np.float32))
    (folder / f"{stem}.json").write_text(json.dumps({"encoder": "titan"}))


def _cohort(root: Path, n: int = 40) -> Path:
    """`<root>/cohort/data/<id>/<id>_CD.json` (clinical: noise) and `features/slide_embeddings/<id>_s1.npy` whose
    first value carries the risk, except for the MISSING patients."""
    rng = np.random.default_rng(3)
    (root / "schema.json").write_text(json.dumps(SCHEMA))
    for k in range(n):
        case_id, z = f"C{k:03d}", rng.normal()
        case = root / "cohort" / "data" / case_id
        case.mkdir(parents=True)
        (case / f"{case_id}_CD.json").write_text(json.dumps(
            {"ki67": float(rng.uniform(0, 100)), "os": float(rng.exponential(30 * np.exp(-z)) + 1),
             "dead": int(rng.random() < 0.8)}))
        if case_id not in MISSING:
            _write_embedding(case / "features" / "slide_embeddings", f"{case_id}_s1",
                             np.concatenate([[z], rng.normal(size=DIM - 1)]))
    return root / "cohort"


def _config(root: Path, extra: str = "") -> Path:
    path = root / "config.yaml"
    path.write_text(
        "task: survival\ntask_name: emb-cohort\nschema: schema.json\nmodalities: [clinical, slide_embedding]\n"
        f"cohort: {{root: cohort{extra}}}\nwork_dir: work\nout: bundle\nmodel: {{family: ridge}}\n"
        "protocol: {folds: 2, repeats: 1, inner_val: 0.25, bootstrap: 5, members: 2, cohort_holdout: false}\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from train.__main__ import main as train_main

    root = tmp_path_factory.mktemp("folder-embeddings")
    _cohort(root)
    assert train_main([str(_config(root)), "--steps", "fit", "export"]) == 0
    return root


def test_folder_route_trains_and_predicts_slide_embeddings(trained, tmp_path):
    bundle = load_bundle(trained / "bundle")
    assert bundle.modalities == ["clinical", "slide_embedding"]
    doc = json.loads((trained / "bundle" / "bundle.json").read_text())
    assert doc["members"][0]["preprocessing"]["slide_embedding"]["names"] == [f"titan:{i}" for i in range(DIM)]

    cohort = trained / "cohort"
    _, before = predict_cohort(trained / "bundle", cohort, tmp_path / "before.csv")
    before = {r["case_id"]: r for r in before}
    assert {k for k, r in before.items() if r["used"] == "clinical+slide_embedding"} == {
        f"C{k:03d}" for k in range(40)} - set(MISSING)
    assert all(before[k]["used"] == "clinical" for k in MISSING)
    # one patient's embedding changes: its prediction changes, nobody else's
    folder = cohort / "data" / "C010" / "features" / "slide_embeddings"
    _write_embedding(folder, "C010_s1", -3 * np.load(folder / "C010_s1.npy") + 2)
    _, after = predict_cohort(trained / "bundle", cohort, tmp_path / "after.csv")
    after = {r["case_id"]: r for r in after}
    assert after["C010"]["risk"] != pytest.approx(before["C010"]["risk"], abs=1e-6)
    assert all(after[k]["risk"] == pytest.approx(before[k]["risk"], rel=1e-9) for k in before if k != "C010")


def test_patients_without_an_embedding_train_with_it_missing(trained):
    from train.__main__ import Run
    from train.config import load_config

    run = Run(load_config(trained / "config.yaml"))
    by_id = {p.case_id: p for p in run.patients}
    assert len(by_id) == 40 and all(by_id[k].slide_embeddings == [] for k in MISSING)
    assert by_id["C005"].slide_embeddings == [trained / "cohort" / "data" / "C005" / "features" / "slide_embeddings"
                                              / "C005_s1.npy"]  # the `.json` sidecar is no second slide
    data = run.arrays()
    present = data.raw_present("slide_embedding")
    assert [data.case_ids[i] for i in np.flatnonzero(~present)] == list(MISSING)
    assert (trained / "bundle" / "bundle.json").is_file()  # the fixture's fit + export got through them


def test_configured_folder_wins_over_the_roots_own(tmp_path):
    from train.__main__ import Run
    from train.config import load_config

    _cohort(tmp_path, n=12)
    outside = tmp_path / "emb"
    _write_embedding(outside, "C004", np.arange(DIM, dtype=np.float32))  # `<id>.<ext>`, as in the table route
    _write_embedding(outside / "sub", "C005_a", np.ones(DIM))
    run = Run(load_config(_config(tmp_path, ", slide_embeddings: emb")))
    found = {p.case_id: p.slide_embeddings for p in run.patients if p.slide_embeddings}
    assert found == {"C004": [outside / "C004.npy"], "C005": [outside / "sub" / "C005_a.npy"]}
    assert math.isfinite(float(run.arrays().slide_embedding[4, 0]))
    with pytest.raises(NotADirectoryError, match=r"cohort.slide_embeddings: .*nowhere is not a folder"):
        Run(load_config(_config(tmp_path, ", slide_embeddings: nowhere")))
