"""evaluate_survival against independent oracles (lifelines, torchsurv, pycox) and its guards."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sksurv.metrics import concordance_index_ipcw

from chimera_surv.survival.evaluation import d_calibration, evaluate_survival


def _cohort(n: int, seed: int, beta: float = 0.8, cens_max: float = 3.0):
    """Exponential times with hazard exp(beta * x), uniform censoring: the true S(t) is known."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t_true = rng.exponential(1.0 / np.exp(beta * x))
    c = rng.uniform(0.0, cens_max, n)
    return x, np.minimum(t_true, c), t_true <= c


GRID = np.linspace(0.05, 2.0, 30)


@pytest.fixture(scope="module")
def split():
    x, t, e = _cohort(300, seed=1)
    tr, te = slice(0, 200), slice(200, 300)
    surv = np.exp(-np.exp(0.8 * x[te])[:, None] * GRID[None, :])
    return t[tr], e[tr], t[te], e[te], x[te], surv


def test_harrell_uno_auc_match_lifelines_and_torchsurv(split):
    import torch
    from lifelines.utils import concordance_index
    from torchsurv.metrics.auc import Auc
    from torchsurv.metrics.cindex import ConcordanceIndex
    from torchsurv.stats.ipcw import get_ipcw

    tr_t, tr_e, t, e, risk, surv = split
    horizons = [0.3, 0.6, 1.0]
    out = evaluate_survival(tr_t, tr_e, t, e, risk, surv, GRID, horizons=horizons, n_boot=0)
    assert out["harrell_c"] == pytest.approx(concordance_index(t, -risk, e), abs=1e-9)

    def f32(a):
        return torch.tensor(np.asarray(a, dtype=np.float32))

    weight = get_ipcw(torch.tensor(tr_e), f32(tr_t), f32(t))
    uno = float(ConcordanceIndex()(f32(risk), torch.tensor(e), f32(t), weight=weight))
    assert out["uno_c"] == pytest.approx(uno, abs=1e-3)
    auc = Auc()(f32(risk), torch.tensor(e), f32(t), auc_type="cumulative", weight=weight,
                new_time=f32(horizons), weight_new_time=get_ipcw(torch.tensor(tr_e), f32(tr_t), f32(horizons)))
    assert out["horizons"] == horizons
    assert [out["td_auc"][h] for h in horizons] == pytest.approx(auc.numpy().tolist(), abs=1e-3)
    assert 0.6 < out["harrell_c"] < 0.8  # the planted risk separates


def test_ibs_matches_pycox(split):
    import pandas as pd
    from pycox.evaluation import EvalSurv

    _, _, t, e, risk, surv = split
    # pycox estimates censoring on the test data itself: give sksurv the same "training" data
    out = evaluate_survival(t, e, t, e, risk, surv, GRID, n_boot=0)
    keep = (GRID >= t.min()) & (GRID < t.max())
    brier = EvalSurv(pd.DataFrame(surv.T, index=GRID), t, e.astype(int), censor_surv="km").brier_score(GRID[keep])
    ibs = np.trapezoid(brier.to_numpy(), GRID[keep]) / (GRID[keep][-1] - GRID[keep][0])
    assert out["ibs"] == pytest.approx(ibs, abs=1e-6)
    assert out["ibs"] < out["ibs_km"]  # the true curves beat the marginal KM


def test_test_times_past_training_follow_up_survive(split):
    tr_t, tr_e, t, e, risk, surv = split
    short = tr_t < 1.0  # training follow-up ends near 1.0; many test patients run past it
    cutoff = tr_t[short].max()
    with pytest.raises(ValueError):  # the library failure being guarded
        concordance_index_ipcw(_y(tr_e[short], tr_t[short]), _y(e, t), risk)
    out = evaluate_survival(tr_t[short], tr_e[short], t, e, risk, surv, GRID, horizons=[0.3, 1.5], n_boot=20)
    assert out["cutoff"] == pytest.approx(cutoff)
    assert out["horizons"] == [0.3]
    assert any("horizon 1.5 dropped" in n for n in out["notes"])
    assert any("censored there" in n for n in out["notes"])
    for key in ("harrell_c", "uno_c", "ibs"):
        assert out[key] is not None and 0.0 < out[key] < 1.0
    json.dumps(out, allow_nan=False)  # no NaN anywhere


def _y(event, time):
    y = np.empty(len(time), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event, time
    return y


def test_d_calibration_accepts_truth_and_rejects_a_wrong_model():
    x, t, e = _cohort(600, seed=3)
    grid = np.linspace(0.01, 3.0, 300)
    truth = np.exp(-np.exp(0.8 * x)[:, None] * grid[None, :])
    wrong = truth ** 4  # hazards four times too high
    good, bad = d_calibration(t, e, truth, grid), d_calibration(t, e, wrong, grid)
    assert sum(good["bins"]) == pytest.approx(600)
    assert good["p_value"] > 0.05
    assert bad["p_value"] < 1e-6
    assert bad["bins"][0] > 3 * bad["bins"][-1]  # survival too low: S(t_i) piles up near 0


def test_d_calibration_spreads_a_censored_patient_below_its_survival():
    grid = np.array([1.0, 2.0])
    # one event with S(t)=0.95 -> top bin; one censored with S(c)=0.25 -> 0.05/0.25 in [0.2,0.3), 0.4 in each lower
    out = d_calibration([1.0, 2.0], [True, False], np.array([[0.95, 0.9], [0.5, 0.25]]), grid)
    assert out["bins"][9] == pytest.approx(1.0)
    assert out["bins"][2] == pytest.approx(0.2)
    assert out["bins"][0] == pytest.approx(0.4) and out["bins"][1] == pytest.approx(0.4)
    assert sum(out["bins"]) == pytest.approx(2.0)


def test_ci_brackets_the_point_and_is_deterministic(split):
    tr_t, tr_e, t, e, risk, surv = split
    a = evaluate_survival(tr_t, tr_e, t, e, risk, surv, GRID, n_boot=50, seed=7)
    b = evaluate_survival(tr_t, tr_e, t, e, risk, surv, GRID, n_boot=50, seed=7)
    assert a == b
    for key in ("harrell_c", "uno_c", "ibs"):
        lo, hi = a["ci95"][key]
        assert lo <= a[key] <= hi and hi - lo > 0.005
    assert len(a["horizons"]) == 3  # default: quartiles of the test event times
    assert set(a["td_auc"]) == set(a["horizons"])


def test_without_curves_and_bad_input(split):
    tr_t, tr_e, t, e, risk, _ = split
    out = evaluate_survival(tr_t, tr_e, t, e, risk, n_boot=0)
    assert out["ibs"] is None and out["d_calibration"] is None and out["harrell_c"] is not None
    bad = risk.copy()
    bad[0] = np.nan
    with pytest.raises(ValueError, match="risk: contains NaN"):
        evaluate_survival(tr_t, tr_e, t, e, bad, n_boot=0)
    with pytest.raises(ValueError, match="surv: expected shape"):
        evaluate_survival(tr_t, tr_e, t, e, risk, np.ones((3, 3)), GRID, n_boot=0)
    with pytest.raises(ValueError, match="test_event: expected"):
        evaluate_survival(tr_t, tr_e, t, e[:-1], risk, n_boot=0)
    # no events at all: figures are None with a note, not NaN or a crash
    none = evaluate_survival(tr_t, tr_e, t, np.zeros_like(e), risk, n_boot=5)
    assert none["harrell_c"] is None and none["notes"]
    json.dumps(none, allow_nan=False)
