"""Networks train on the config's `device`: the plumbing on any machine, CUDA against the CPU where a GPU exists
(the GPU half runs on a lent GPU machine, never in CI; benchmarks/results/auto_networks_cost_cuda.json names its last run)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train.data import CohortArrays, encode_fold
from train.deep import fit_deep, network_risks
from train.fit import network_device, to_device

TRAIN = {"epochs": 10, "batch_size": 16, "lr": 0.01, "weight_decay": 1e-4, "patience": 4, "min_epochs": 2,
         "max_patches": 8, "modality_dropout": {}, "grad_clip": 5.0, "loss": None}
RNA_NET = {"modalities": {"rna": {"dim": 6, "encoder": {"name": "mlp", "hidden": [8], "dropout": 0.0}}},
           "fusion": {"name": "concat_mlp", "hidden": [], "dropout": 0.0}, "head": {"name": "cox"}, "missing": "token"}
BAG_NET = {"modalities": {**RNA_NET["modalities"],
                           "wsi": {"dim": 4, "encoder": {"name": "abmil_gated", "hidden": 8, "dropout": 0.0}}},
           "fusion": {"name": "concat_mlp", "hidden": [], "dropout": 0.0}, "head": {"name": "cox"}, "missing": "token"}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (a lent machine, not CI)")


def _cohort(n: int = 60, seed: int = 0, bags: bool = False) -> CohortArrays:
    rng = np.random.default_rng(seed)
    rna = np.exp(rng.normal(size=(n, 6))).astype(np.float32)
    risk = np.log(rna[:, 0]) - np.log(rna[:, 1])
    time = rng.exponential(30 * np.exp(-risk)) + 1
    event = (rng.random(n) < 0.7).astype(np.int64)
    label = (risk > np.median(risk)).astype(np.int64)
    patient_bags = [rng.normal(size=(int(rng.integers(5, 20)), 4)).astype(np.float32) + r for r in risk] if bags \
        else [None] * n
    return CohortArrays(case_ids=[f"P{i:03d}" for i in range(n)], cohorts=["all"] * n, time=time, event=event,
                        label=label, modalities=["rna", "wsi"] if bags else ["rna"], bags=patient_bags,
                        records=[None] * n, rna=rna)


def _fit(device: str, survival: bool = True, bags: bool = False, **train_cfg):
    data = _cohort(bags=bags)
    train, modalities = list(range(45)), data.modalities
    enc = encode_fold(data, train, None, {"preprocess": {"rna": {"log1p": True}}, "modalities": modalities})
    net = BAG_NET if bags else RNA_NET
    fit = fit_deep(net if survival else {**net, "head": {"name": "binary"}}, enc, data, train, modalities,
                   {**TRAIN, **train_cfg}, 7, survival, device=device)
    risk, _ = network_risks(fit, enc, data, train, list(range(45, 60)), modalities, 8)
    return fit, risk


def test_to_device_moves_every_tensor_and_the_network_device_is_its_weights():
    moved = to_device({"a": torch.ones(2), "b": torch.zeros(1, dtype=torch.bool)}, torch.device("cpu"))
    assert {k: v.device.type for k, v in moved.items()} == {"a": "cpu", "b": "cpu"}
    assert network_device(torch.nn.Linear(2, 1)).type == "cpu"


def test_fit_network_trains_on_the_configured_device(monkeypatch):
    """protocol.fit_network hands the config's `device` to fit_deep (the one path every network trains through)."""
    from train import protocol

    seen = {}

    def fake_fit_deep(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(protocol, "fit_deep", fake_fit_deep)
    monkeypatch.setattr(protocol, "encode_fold", lambda *a, **k: type("E", (), {"dims": {"rna": 6}})())
    monkeypatch.setattr(protocol, "network_config", lambda arch, dims, survival: (RNA_NET, None))
    monkeypatch.setattr(protocol, "fold_time_grid", lambda ctx, net_cfg, split: (net_cfg, TRAIN))
    ctx = type("C", (), {"data": _cohort(), "schema": None, "survival": True,
                         "config": {"device": "cuda:1", "threads": 1, "protocol": {"inner_val": 0.2}}})()
    from train.folds import Split

    with pytest.raises(RuntimeError, match="stop here"):
        protocol.fit_network(ctx, {"modalities": ["rna"]}, Split("s", tuple(range(40)), ()), 3)
    assert seen["device"] == "cuda:1"


def test_cpu_networks_come_back_on_the_cpu():
    fit, risk = _fit("cpu", bags=True, stopping="inner_cv", average="swa")
    assert all(network_device(n).type == "cpu" for n in fit.networks)
    assert np.isfinite(risk).all()


def test_inner_fits_spread_over_the_visible_gpus_only_for_a_bare_cuda():
    from train.selection.networks import task_device

    assert [task_device("cuda", k, 2) for k in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert task_device("cuda", 3, 1) == "cuda"  # one GPU
    assert task_device("cuda:1", 3, 4) == "cuda:1"  # the user named one
    assert task_device("cpu", 3, 0) == "cpu"


@CUDA
@pytest.mark.parametrize("settings", [{}, {"stopping": "inner_cv", "average": "swa", "seeds": 2},
                                      {"bags": True, "max_patches": 8}])
def test_cuda_training_matches_the_cpu_and_repeats_itself(settings):
    cpu_fit, cpu_risk = _fit("cpu", **settings)
    gpu_fit, gpu_risk = _fit("cuda", **settings)
    _, again_risk = _fit("cuda", **settings)
    assert all(network_device(n).type == "cpu" for n in gpu_fit.networks)  # the bundle writer's expectation
    assert gpu_fit.best_epoch == cpu_fit.best_epoch
    # a Cox risk is defined up to a constant: AdamW turns the float noise of a zero gradient (the last bias) into
    # steps of about `lr`, so the two devices' risks differ by a constant (0.014 and 0.024 measured on an H200)
    np.testing.assert_allclose(gpu_risk - gpu_risk.mean(), cpu_risk - cpu_risk.mean(), atol=2e-3)
    np.testing.assert_array_equal(again_risk, gpu_risk)  # deterministic on the GPU too


@CUDA
def test_cuda_trains_a_binary_head_with_its_class_weight():
    """bce's pos_weight tensor follows the logits onto the GPU (it was created on the CPU)."""
    fit, risk = _fit("cuda", survival=False)
    assert np.isfinite(risk).all() and fit.best_epoch >= 1
