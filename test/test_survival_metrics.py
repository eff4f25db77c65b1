"""Metrics: the organisers' Harrell C and its two edge cases, Uno C, IBS, td-AUC, bootstrap CI."""

from __future__ import annotations

import numpy as np
import pytest
from sksurv.metrics import concordance_index_censored

from chimera_surv.survival.metrics import (
    UndefinedMetric,
    bootstrap_ci,
    c_index_of_times,
    harrell_c,
    integrated_brier,
    km_survival_grid,
    td_auc,
    uno_c,
)


@pytest.fixture(scope="module")
def gbsg2():
    from sksurv.datasets import load_gbsg2

    x, y = load_gbsg2()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    tr, te = idx[:480], idx[480:]
    # a prognostic score from the data (nodes, tumour size), not a fitted model
    score = np.log1p(x["pnodes"].to_numpy(float)) + 0.01 * x["tsize"].to_numpy(float)
    return y["cens"][tr], y["time"][tr], y["cens"][te], y["time"][te], score[te]


def test_harrell_c_is_the_organisers_call(gbsg2):
    _, _, e, t, s = gbsg2
    assert harrell_c(e, t, s) == concordance_index_censored(e.astype(bool), t, s)[0]
    # the challenge negates the submitted time
    assert c_index_of_times(e, t, -s) == pytest.approx(harrell_c(e, t, s))
    assert 0.6 < harrell_c(e, t, s) < 0.8


def test_harrell_c_edge_cases_are_undefined_not_crashes():
    no_pair = ([0, 0, 0], [1.0, 2.0, 3.0], [0.1, 0.2, 0.3])
    tied_events = ([0, 1, 1], [1.0, 2.0, 2.0], [0.1, 0.2, 0.3])
    for case in (no_pair, tied_events):
        assert np.isnan(harrell_c(*case))
        with pytest.raises(UndefinedMetric):
            harrell_c(*case, on_undefined="raise")
    assert harrell_c([1, 0], [1.0, 2.0], [1.0, 1.0]) == 0.5  # tied risks count ½
    with pytest.raises(ValueError):
        harrell_c([1, 0], [1.0, 2.0], [np.nan, 1.0])


def test_uno_ibs_td_auc_on_gbsg2(gbsg2):
    tr_e, tr_t, e, t, s = gbsg2
    tau = 1800.0
    c_uno = uno_c(tr_e, tr_t, e, t, s, tau=tau)
    assert 0.55 < c_uno < 0.85
    times = np.percentile(t[e.astype(bool)], [20, 40, 60, 80])
    auc, mean_auc = td_auc(tr_e, tr_t, e, t, s, times)
    assert auc.shape == (4,) and 0.55 < mean_auc < 0.9
    km = km_survival_grid(tr_e, tr_t, times, len(t))
    ibs_km = integrated_brier(tr_e, tr_t, e, t, km, times)
    assert 0.1 < ibs_km < 0.3
    perfect_wrong = np.ones_like(km)  # claims nobody ever fails
    assert integrated_brier(tr_e, tr_t, e, t, perfect_wrong, times) > ibs_km


def test_bootstrap_ci_brackets_the_point_and_is_seeded(gbsg2):
    _, _, e, t, s = gbsg2
    point, lo, hi = bootstrap_ci(harrell_c, e, t, s, n_boot=200, seed=3)
    assert lo < point < hi and hi - lo < 0.2
    assert bootstrap_ci(harrell_c, e, t, s, n_boot=200, seed=3) == (point, lo, hi)
    # resamples without a comparable pair are skipped, not propagated as NaN
    p2, lo2, hi2 = bootstrap_ci(harrell_c, np.array([1, 0, 0]), np.array([1.0, 2.0, 3.0]),
                                np.array([3.0, 2.0, 1.0]), n_boot=50)
    assert p2 == 1.0 and np.isfinite([lo2, hi2]).all()
