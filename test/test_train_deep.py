"""train/deep.py: epoch count by inner CV + refit, seed ensembles, weight averaging, and their bundles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from chimera_surv import synthetic
from chimera_surv.bundle import ModalityInputs, load_bundle, read_bundle_json
from chimera_surv.make_cases import write_training_cohort
from chimera_surv.readers.clinical import parse_clinical
from chimera_surv.readers.rna import parse_rna
from train.data import CohortArrays, encode_fold
from train.deep import DeepSettings, WeightAverager, fit_deep, network_risks
from train.fit import score

TRAIN = {"epochs": 12, "batch_size": 16, "lr": 0.01, "weight_decay": 1e-4, "patience": 4, "min_epochs": 2,
         "max_patches": 8, "modality_dropout": {}, "grad_clip": 5.0, "loss": None}
NET = {"modalities": {"rna": {"dim": 6, "encoder": {"name": "mlp", "hidden": [8], "dropout": 0.0}}},
       "fusion": {"name": "concat_mlp", "hidden": [], "dropout": 0.0}, "head": {"name": "cox"}, "missing": "token"}


def _rna_cohort(n: int = 60, seed: int = 0) -> CohortArrays:
    rng = np.random.default_rng(seed)
    rna = np.exp(rng.normal(size=(n, 6))).astype(np.float32)
    risk = np.log(rna[:, 0]) - np.log(rna[:, 1])
    time = rng.exponential(30 * np.exp(-risk)) + 1
    event = (rng.random(n) < 0.7).astype(np.int64)
    return CohortArrays(case_ids=[f"P{i:03d}" for i in range(n)], cohorts=["all"] * n, time=time, event=event,
                        label=np.full(n, -1), modalities=["rna"], bags=[None] * n, records=[None] * n, rna=rna)


def _fit(data, train, **train_cfg):
    enc = encode_fold(data, train, None, {"preprocess": {"rna": {"log1p": True}}})
    fit = fit_deep(NET, enc, data, train, ["rna"], {**TRAIN, **train_cfg}, 7, True)
    return fit, enc


def test_weight_averager_swa_window_and_ema():
    net = torch.nn.Linear(1, 1, bias=False)
    swa, ema = WeightAverager("swa", last=2), WeightAverager("ema", decay=0.5)
    for value in (1.0, 2.0, 4.0):
        net.weight.data.fill_(value)
        swa.update(net)
        ema.update(net)
    assert float(swa.state()["weight"]) == pytest.approx(3.0)  # mean of the last two epochs
    assert float(ema.state()["weight"]) == pytest.approx(0.5 * (0.5 * 1 + 0.5 * 2) + 0.5 * 4)
    assert WeightAverager("none").state() is None


def test_settings_are_validated():
    assert DeepSettings.from_config({}).stopping == "holdout"
    with pytest.raises(ValueError, match="train.stopping"):
        DeepSettings.from_config({"stopping": "early"})
    with pytest.raises(ValueError, match="needs train.stopping: inner_cv"):
        DeepSettings.from_config({"average": "swa"})


def test_inner_cv_refits_on_the_whole_training_part_deterministically():
    data = _rna_cohort()
    train, test = list(range(45)), list(range(45, 60))
    fit, enc = _fit(data, train, stopping="inner_cv", seeds=2, average="swa", average_last=3)
    assert fit.stopping == "inner_cv" and fit.n_train == len(train) and len(fit.networks) == 2
    assert 2 <= fit.best_epoch <= len(fit.history) <= TRAIN["epochs"]
    assert fit.seeds[0] == 7 and fit.seeds[1] != 7
    risk, scales = network_risks(fit, enc, data, train, test, ["rna"], None)
    assert len(scales) == 2 and np.isfinite(risk).all() and 0.0 <= score(True, data, test, risk) <= 1.0
    # The two seeds differ; the ensemble is the mean of their standardised risks.
    one = [(r - s) / c for r, (s, c) in zip(
        [n({"rna": torch.from_numpy(enc.vectors["rna"][test]), "rna_present": torch.ones(len(test), dtype=bool)})
         ["risk"].detach().double().numpy() for n in fit.networks], scales)]
    assert not np.allclose(one[0], one[1])
    np.testing.assert_allclose(risk, np.mean(one, axis=0), rtol=1e-5, atol=1e-6)
    again, _ = _fit(data, train, stopping="inner_cv", seeds=2, average="swa", average_last=3)
    assert again.best_epoch == fit.best_epoch
    for a, b in zip(fit.networks, again.networks):
        for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(x, y), k


def test_holdout_with_one_seed_is_the_old_early_stopping():
    data = _rna_cohort()
    fit, _ = _fit(data, list(range(45)))
    assert fit.stopping == "holdout" and len(fit.networks) == 1
    assert fit.n_train + fit.n_val == 45 and fit.history[fit.best_epoch - 1]["val_metric"] == fit.best_val


def test_seed_ensemble_bundle_exports_and_predicts(tmp_path):
    from train.__main__ import Run
    from train.config import load_config

    root = tmp_path / "cohort"
    options = synthetic.CohortOptions(with_images=False, genes=tuple(synthetic.gene_panel(20)))
    write_training_cohort(synthetic.make_cohort(3, 36, 1, options), root, workers=1)
    config = load_config({
        "task": 3, "cohort": {"root": str(root)}, "modalities": ["clinical", "rna"], "genes": "from_cohort",
        "work_dir": str(tmp_path / "work"), "out": str(tmp_path / "bundle"),
        "preprocess": {"rna": {"log1p": True, "top_k": 10, "n_components": 3}},
        "protocol": {"folds": 2, "repeats": 1, "inner_val": 0.25, "cohort_holdout": False, "members": 2},
        "train": {**TRAIN, "epochs": 6, "stopping": "inner_cv", "seeds": 2, "average": "ema"},
        "model": {"encoders": {"clinical": {"name": "mlp", "hidden": [8]}, "rna": {"name": "mlp", "hidden": [8]}},
                  "fusion": {"name": "concat_mlp", "hidden": [8], "dropout": 0.0}}})
    run = Run(config)
    members = run.fit()
    assert [m["name"] for m in members] == ["member0", "member0s1", "member1", "member1s1"]
    assert len({m["best_epoch"] for m in members[:2]}) == 1 and members[0]["seed"] != members[1]["seed"]
    run.export()
    doc = read_bundle_json(tmp_path / "bundle")
    assert [m["name"] for m in doc["members"]] == [m["name"] for m in members]
    bundle = load_bundle(tmp_path / "bundle")
    raw = json.loads(next((root / "data").glob("*/*_CD.json")).read_text())
    record = parse_clinical(raw, bundle.clinical_schema)
    full = bundle.predict(ModalityInputs(clinical=record, rna=parse_rna({g: 3.0 for g in bundle.genes},
                                                                        bundle.genes)))
    alone = bundle.predict(ModalityInputs(clinical=record))
    assert np.isfinite([full.value, alone.value]).all() and alone.used == ["clinical"]
