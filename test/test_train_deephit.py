"""A DeepHit head trains through train/ (fit, export, audit): the time grid is fitted per fold on training
times only, the validation loss gets the logits it needs, the bundle predicts and the audit plays on E[T]."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from chimera_surv import synthetic
from chimera_surv.bundle import ModalityInputs, load_bundle
from chimera_surv.make_cases import write_training_cohort
from chimera_surv.readers.clinical import parse_clinical
from chimera_surv.readers.rna import parse_rna
from chimera_surv.survival.discretize import make_cuts
from train.__main__ import Run, main
from train.config import load_config
from train.networks import with_time_grid
from train.protocol import member_splits

ENCODERS = {"clinical": {"name": "mlp", "hidden": [8]}, "rna": {"name": "mlp", "hidden": [8]}}


def test_time_grid_rules():
    time, event = np.array([3.0, 10.0, 25.0, 40.0]), np.array([1, 0, 1, 1])
    cox = {"head": {"name": "cox"}}
    assert with_time_grid(cox, {"loss": None}, time, event) == (cox, {"loss": None})
    net, tcfg = with_time_grid({"head": {"name": "deephit", "n_bins": 5}}, {"loss": None}, time, event)
    assert net["head"]["bin_times"] == tcfg["loss"]["cuts"] == pytest.approx([0, 10, 20, 30, 40])
    assert tcfg["loss"]["name"] == "deephit_pycox" and net["head"]["n_bins"] == 5
    fold = {"name": "deephit", "n_bins": 4, "variant": "modalsurv", "grid": "fold"}
    net, tcfg = with_time_grid({"head": fold}, {}, time, event)
    assert tcfg["loss"]["cuts"] == pytest.approx([0, 10, 20, 30, 40]) and net["head"]["n_bins"] == 4
    assert net["head"]["bin_times"] == pytest.approx([5, 15, 25, 35])
    # ModalSurv's own edges (Task 3 main.py: torch.linspace(5, 250, TIME_BINS + 1)) are the variant's default
    net, tcfg = with_time_grid({"head": {"name": "deephit", "n_bins": 30, "variant": "modalsurv"}}, {}, time, event)
    assert tcfg["loss"]["cuts"] == pytest.approx(np.linspace(5.0, 250.0, 31).tolist())
    assert net["head"]["bin_times"][0] == pytest.approx(5 + 245 / 60) and net["head"]["n_bins"] == 30
    # ranking by the event probability at a horizon: the fold's median event time unless given
    prob = {"name": "deephit", "n_bins": 5, "risk": "event_probability"}
    net, _ = with_time_grid({"head": prob}, {"loss": None}, time, event)
    assert net["head"]["horizon"] == pytest.approx(25.0)  # median of the event times 3, 25, 40
    net, _ = with_time_grid({"head": {**prob, "horizon": 12.0}}, {"loss": None}, time, event)
    assert net["head"]["horizon"] == 12.0
    given = {"loss": {"name": "deephit_pycox", "cuts": [0.0, 50.0, 100.0]}}
    net, _ = with_time_grid({"head": {"name": "deephit"}}, given, time, event)
    assert net["head"]["bin_times"] == [0.0, 50.0, 100.0] and net["head"]["n_bins"] == 3
    with pytest.raises(ValueError, match="deephit_pycox"):
        with_time_grid({"head": {"name": "deephit"}}, {"loss": {"name": "cox"}}, time, event)


def test_deephit_trains_exports_and_audits_on_expected_time(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deephit")
    cohort = tmp / "cohort"
    options = synthetic.CohortOptions(with_images=False, genes=tuple(synthetic.gene_panel(30)))
    write_training_cohort(synthetic.make_cohort(3, 36, 1, options), cohort, workers=1)
    raw = {"task": 3, "seed": 0, "cohort": {"root": str(cohort)}, "modalities": ["clinical", "rna"],
           "genes": "from_cohort", "work_dir": str(tmp / "work"), "out": str(tmp / "bundle"),
           "preprocess": {"rna": {"log1p": True, "top_k": 20, "n_components": 4}},
           "protocol": {"folds": 2, "repeats": 1, "inner_val": 0.25, "cohort_holdout": False, "bootstrap": 10,
                        "members": 2},
           "train": {"epochs": 5, "batch_size": 12, "lr": 0.01, "weight_decay": 1e-4, "patience": 5,
                     "min_epochs": 5, "max_patches": 8, "modality_dropout": {}, "deephit_cuts": "quantiles"},
           "model": {"encoders": ENCODERS, "fusion": {"name": "concat_mlp", "hidden": [8]},
                     "head": {"name": "deephit", "n_bins": 6}},
           "audit": {"maskers": ["mean"]}}
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main([str(config), "--steps", "fit", "export", "audit"]) == 0

    ctx = Run(load_config(config)).context()
    for split in member_splits(ctx):
        record = json.loads((tmp / "work" / "members" / f"{split.name}.json").read_text())
        train = list(split.train)
        cuts = make_cuts(ctx.data.time[train], 6, "quantiles", events=ctx.data.event[train])
        assert record["network"]["head"]["bin_times"] == pytest.approx(cuts.tolist())  # training times only
        losses = [h["train_loss"] for h in record["history"]]
        assert len(losses) == 5 and np.isfinite(losses).all() and losses[-1] < losses[0]
        assert all(np.isfinite(h["val_loss"]) for h in record["history"])
        assert np.isfinite(record["oof_risk"]).all() and np.std(record["oof_risk"]) > 0
        # risk = −E[T]: within minus the grid's span
        assert all(-cuts[-1] - 1e-6 <= r <= 0 for r in record["oof_risk"])
        doc = json.loads((tmp / "work" / "report" / "audit" / f"audit_{record['name']}.json").read_text())
        assert doc["output"] == "expected_time"
        v = np.asarray(doc["maskers"]["mean"]["per_patient"]["coalition_values"])
        assert (v >= -1e-9).all() and (v <= cuts[-1] + 1e-6).all()  # E[T] in months, on the grid

    bundle = load_bundle(tmp / "bundle")
    raw_clinical = json.loads(next((cohort / "data").glob("*/*_CD.json")).read_text())
    record = parse_clinical(raw_clinical, bundle.clinical_schema)
    prediction = bundle.predict(ModalityInputs(clinical=record, rna=parse_rna({g: 5.0 for g in bundle.genes},
                                                                               bundle.genes)))
    assert np.isfinite(prediction.value) and prediction.value > 0
