"""Synthetic survival regimes: the generator, the oracle's known answers, the training settings and a reduced
end-to-end run (with an ablation) that must already tell synergy from uniqueness."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from chimera_surv.audit.intershap import intershap
from train.audit_synthetic import (
    ABLATIONS,
    MODALITIES,
    REGIMES,
    SyntheticConfig,
    _batch,
    _split,
    _standardise,
    censoring_rate,
    generate,
    network_config,
    oracle_value_function,
    run_synthetic_validation,
    with_overrides,
)

SMALL = SyntheticConfig(n=800, latent_dim=40, dims=(40, 20), n_audit=60)


def test_censoring_rate_hits_the_target_fraction() -> None:
    h = np.exp(np.random.default_rng(0).normal(size=1000)) / 60
    c = censoring_rate(h, 0.35)
    assert np.mean(h / (h + c)) == pytest.approx(0.35, abs=1e-9)


@pytest.mark.parametrize("regime", REGIMES)
def test_generator_structure(regime: str) -> None:
    cohort = generate(regime, SMALL, seed=1)
    n = SMALL.n
    assert cohort.x["x1"].shape == (n, 40) and cohort.x["x2"].shape == (n, 20)
    assert np.bincount(cohort.bits[:, 0] + 2 * cohort.bits[:, 1]).tolist() == [n // 4] * 4
    assert 0.28 < cohort.event.mean() < 0.42
    s = 2 * cohort.bits - 1
    np.testing.assert_allclose(cohort.log_hazard, SMALL.beta * s[:, 0] * s[:, 1])
    corr = {m: [abs(np.corrcoef(cohort.z[m].mean(1), s[:, b])[0, 1]) for b in (0, 1)] for m in MODALITIES}
    if regime == "synergy":
        assert corr["x1"][0] > 0.3 and corr["x2"][1] > 0.3 and corr["x1"][1] < 0.15 and corr["x2"][0] < 0.15
    elif regime == "uniqueness":
        assert max(corr["x2"]) < 0.15
    else:
        np.testing.assert_array_equal(cohort.z["x1"], cohort.z["x2"])
    again = generate(regime, SMALL, seed=1)
    np.testing.assert_array_equal(again.x["x1"], cohort.x["x1"])


def test_oracle_separates_the_regimes() -> None:
    """The Bayes learner on the latents: uniqueness exactly 0%, synergy high (eq. 5 ≈ 33%), redundancy between."""
    cfg = SyntheticConfig(n=2000)
    pct = {}
    for regime in REGIMES:
        c = generate(regime, cfg, seed=0)
        bg, ex = {m: c.z[m][:1500] for m in MODALITIES}, {m: c.z[m][1500:] for m in MODALITIES}
        res = intershap(oracle_value_function(regime, cfg), ex, bg, "mean")
        pct[regime] = {k: e.interaction_pct for k, e in res.estimates().items()}
    assert pct["uniqueness"]["orig_mean_abs"] < 1e-9
    assert pct["synergy"]["orig_mean_abs"] > 75.0
    assert 30.0 < pct["synergy"]["e5_patient_mean"] <= 100.0 / 3.0 + 1e-9
    assert 5.0 < pct["redundancy"]["orig_mean_abs"] < pct["synergy"]["orig_mean_abs"]


def test_reduced_end_to_end_separates_synergy_and_writes_report(tmp_path) -> None:
    """Reduced run (40-d latents with a stronger shift, small MLP, 12 epochs at a higher lr so it fits in seconds;
    modality dropout, weight decay and dropout as the default): files, bookkeeping, and synergy well above
    uniqueness under both maskers (dev run: mean 40.9 vs 11.7, shuffle 67.0 vs 10.7)."""
    cfg = replace(SMALL, n=2000, hidden=(40, 20), n_audit=100, shuffle_k=10,
                  shift={"synergy": 0.8, "uniqueness": 0.8, "redundancy": 0.6},
                  train={**SMALL.train, "epochs": 12, "min_epochs": 12, "patience": 2, "lr": 3e-3})
    report = run_synthetic_validation(cfg, tmp_path, ablations=("no_modality_dropout",))
    data = json.loads((tmp_path / "audit_synthetic.json").read_text())
    assert (tmp_path / "audit_synthetic.png").stat().st_size > 10_000
    assert [r["regime"] for r in data["runs"]] == list(REGIMES)
    for run in report["runs"]:
        assert run["n_audited"] == 100 and run["n_train"] == 1400 and run["n_val"] == 300
        assert run["epochs_run"] == 12 and 1 <= run["best_epoch"] <= 12
        for audit in ("model_mean", "model_shuffle", "oracle_mean"):
            for est in run[audit]["estimators"].values():
                assert 0.0 <= est["interaction_pct"] <= 100.0
        assert run["model_shuffle"]["masker"]["k"] == 10
        assert len(run["model_mean"]["per_patient_local_orig_pct"]) == 100
        assert run["test_c_index"] > 0.6 and run["oracle_test_c_index"] > 0.6
    agg = data["aggregate"]
    assert agg["uniqueness"]["oracle_mean.orig_mean_abs"]["mean"] < 1e-9
    for audit in ("model_mean", "model_shuffle"):
        assert agg["synergy"][f"{audit}.orig_mean_abs"]["mean"] > agg["uniqueness"][f"{audit}.orig_mean_abs"]["mean"] + 20
    assert set(data["separation"]) == {"model_mean", "model_shuffle", "oracle_mean"}
    abl = data["ablations"]["no_modality_dropout"]
    assert abl["overrides"] == ABLATIONS["no_modality_dropout"] and len(abl["runs"]) == 3
    assert set(abl["aggregate"]) == set(REGIMES)


def test_overrides_merge_train_keys_and_leave_defaults_alone() -> None:
    base = SyntheticConfig()
    cfg = with_overrides(base, ABLATIONS["no_modality_dropout"])
    assert cfg.train["modality_dropout"] == {} and base.train["modality_dropout"] == {"x1": 0.2, "x2": 0.2}
    assert cfg.train["lr"] == base.train["lr"] and cfg.n == base.n
    prev = with_overrides(base, ABLATIONS["previous_n3000"])
    assert (prev.n, prev.train["lr"], prev.train["min_epochs"], prev.dropout) == (3000, 3e-3, 10, 0.0)
    assert SyntheticConfig().train["modality_dropout"] == {"x1": 0.2, "x2": 0.2}


def test_dropped_modality_is_the_mean_masker_baseline() -> None:
    """Modality dropout trains on exactly what the mean masker feeds: zeros = the standardised training mean."""
    from chimera_surv.models import build_network

    cohort = generate("synergy", SMALL, seed=3)
    tr, _, te = _split(cohort.bits, SMALL, seed=3)
    x = _standardise(cohort.x, tr)
    for m in MODALITIES:
        assert np.abs(x[m][tr].mean(0)).max() < 1e-5
    torch.manual_seed(0)
    net = build_network(network_config(SMALL)).eval()
    assert net.missing == "zero"  # a learned token would drift away from the mean masker's baseline
    dropped = _batch(x, te[:32])
    dropped["x2_present"] = torch.zeros(32, dtype=torch.bool)
    masked = _batch(x, te[:32])
    masked["x2"] = torch.from_numpy(np.repeat(x["x2"][tr].mean(0, keepdims=True), 32, axis=0))
    with torch.no_grad():
        torch.testing.assert_close(net(dropped)["risk"], net(masked)["risk"], atol=1e-5, rtol=0)
