"""Synthetic survival regimes: the generator, the oracle's known answers and a reduced end-to-end run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from chimera_surv.audit.intershap import intershap
from train.audit_synthetic import (
    MODALITIES,
    REGIMES,
    SyntheticConfig,
    censoring_rate,
    generate,
    oracle_value_function,
    run_synthetic_validation,
)

SMALL = SyntheticConfig(n=800, latent_dim=40, dims=(40, 20))


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


def test_reduced_end_to_end_writes_report(tmp_path) -> None:
    cfg = replace(SMALL, n=600, n_audit=60, shuffle_k=10, train={**SMALL.train, "epochs": 6, "patience": 3,
                                                                  "min_epochs": 1})
    report = run_synthetic_validation(cfg, tmp_path)
    data = json.loads((tmp_path / "audit_synthetic.json").read_text())
    assert (tmp_path / "audit_synthetic.png").stat().st_size > 10_000
    assert [r["regime"] for r in data["runs"]] == list(REGIMES)
    for run in report["runs"]:
        assert run["n_audited"] == 60 and run["n_train"] == 420
        for audit in ("model_mean", "model_shuffle", "oracle_mean"):
            for est in run[audit]["estimators"].values():
                assert 0.0 <= est["interaction_pct"] <= 100.0
        assert run["model_shuffle"]["masker"]["k"] == 10
        assert 0.0 <= run["test_c_index"] <= 1.0
    assert set(data["separated"]) == {"model_mean", "model_shuffle", "oracle_mean"}
    assert data["aggregate"]["uniqueness"]["oracle_mean.orig_mean_abs"]["mean"] < 1e-9
