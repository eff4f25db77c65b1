"""Losses against oracles: lifelines (Efron log-lik), sksurv CoxPH (Breslow coefficients), torchsurv, pycox."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chimera_surv.survival.discretize import make_cuts, modalsurv_bin, modalsurv_edges, pycox_bin
from chimera_surv.survival.losses import (
    LOSSES,
    balanced_pos_weight,
    bce_loss,
    cox_ph_loss,
    deephit_loss,
    l1_alignment_loss,
)


def _t(x, dtype=torch.float64):
    return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float64), dtype=dtype)


def test_efron_equals_lifelines_log_likelihood_on_rossi():
    from lifelines import CoxPHFitter
    from lifelines.datasets import load_rossi

    df = load_rossi()  # 432 rows, many tied weeks
    cph = CoxPHFitter().fit(df, "week", "arrest")
    x = df.drop(columns=["week", "arrest"]).to_numpy(dtype=np.float64)
    risk = _t(x @ cph.params_.to_numpy())
    nll = cox_ph_loss(risk, _t(df.week), _t(df.arrest), ties="efron", reduction="sum")
    assert nll.item() == pytest.approx(-cph.log_likelihood_, abs=1e-8)


def test_breslow_fit_reproduces_sksurv_coefficients_on_whas500():
    from sksurv.datasets import load_whas500
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    x_df, y = load_whas500()
    x = x_df.select_dtypes("number").astype(float).to_numpy()
    x = (x - x.mean(0)) / x.std(0)
    ref = CoxPHSurvivalAnalysis(ties="breslow").fit(x, y).coef_
    beta = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    xt, t, e = _t(x), _t(y["lenfol"]), _t(y["fstat"].astype(float))
    opt = torch.optim.LBFGS([beta], lr=1, max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = cox_ph_loss(xt @ beta, t, e, ties="breslow", reduction="sum")
        loss.backward()
        return loss

    opt.step(closure)
    assert np.abs(beta.detach().numpy() - ref).max() < 1e-5


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_matches_torchsurv_sum(ties):
    from torchsurv.loss.cox import neg_partial_log_likelihood

    g = torch.Generator().manual_seed(0)
    risk = torch.randn(60, generator=g, dtype=torch.float64)
    time = torch.randint(1, 15, (60,), generator=g).to(torch.float64)  # many ties
    event = torch.rand(60, generator=g) < 0.6
    ours = cox_ph_loss(risk, time, event, ties=ties, reduction="sum")
    theirs = neg_partial_log_likelihood(risk, event, time, ties_method=ties, reduction="sum")
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)  # torchsurv works in float32


def test_reductions_order_ties_and_no_event_batch():
    risk = _t([0.5, -0.2, 1.0, 0.1])
    time, event = _t([5.0, 3.0, 3.0, 1.0]), _t([1, 1, 0, 0])
    total = cox_ph_loss(risk, time, event, reduction="sum")
    assert cox_ph_loss(risk, time, event).item() == pytest.approx(total.item() / 2)
    assert cox_ph_loss(risk, time, event, reduction="batch").item() == pytest.approx(total.item() / 4)
    # Hand-computed Breslow: event at t=5 alone in its risk set; event at t=3 with {5, 3, 3}.
    hand = -(0.5 - 0.5) - (-0.2 - np.log(np.exp(0.5) + np.exp(-0.2) + np.exp(1.0)))
    assert total.item() == pytest.approx(hand)
    # "order" differs from Breslow on a tie only: the tied event sorted first sees a smaller risk set.
    assert not np.isclose(cox_ph_loss(risk, time, event, ties="order").item(), total.item() / 2)
    no_event = cox_ph_loss(risk.clone().requires_grad_(), time, _t([0, 0, 0, 0]))
    assert no_event.item() == 0.0 and no_event.requires_grad
    with pytest.raises(ValueError):
        cox_ph_loss(risk, time[:3], event)


def test_pair_batch_is_a_softplus_ranking_loss():
    risk, time, event = _t([0.3, 1.1]), _t([2.0, 9.0]), _t([1, 0])
    # seed-methods §0.1: with 2 patients the partial likelihood is softplus(r_long − r_short) / n_ev.
    assert cox_ph_loss(risk, time, event).item() == pytest.approx(np.log1p(np.exp(1.1 - 0.3)))


@pytest.mark.parametrize("seed", [0, 1])
def test_deephit_pycox_equals_pycox(seed):
    from pycox.models.data import pair_rank_mat
    from pycox.models.loss import DeepHitSingleLoss

    rng = np.random.default_rng(seed)
    n, m = 40, 8
    times = rng.integers(1, 100, n).astype(float)
    events = (rng.random(n) < 0.5).astype(float)
    cuts = make_cuts(times, m)
    idx = pycox_bin(times, events, cuts)
    phi = torch.as_tensor(rng.normal(size=(n, m)), dtype=torch.float32)
    ours = deephit_loss(phi, torch.as_tensor(idx), torch.as_tensor(events, dtype=torch.float32), 0.2, 0.1)
    rank_mat = torch.as_tensor(pair_rank_mat(idx, events), dtype=torch.float32)
    theirs = DeepHitSingleLoss(alpha=0.2, sigma=0.1)(phi, torch.as_tensor(idx), torch.as_tensor(events,
                                                     dtype=torch.float32), rank_mat)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_pycox_binning_equals_label_transform():
    from pycox.preprocessing.label_transforms import LabTransDiscreteTime

    rng = np.random.default_rng(3)
    times = rng.integers(1, 120, 200).astype(float)
    events = (rng.random(200) < 0.4).astype(float)
    lab = LabTransDiscreteTime(10)
    idx_ref, _ = lab.fit_transform(times, events)
    cuts = make_cuts(times, 10)
    assert np.allclose(cuts, lab.cuts)
    assert np.array_equal(pycox_bin(times, events, cuts), idx_ref)


def test_modalsurv_deephit_hand_case_and_bins():
    edges = modalsurv_edges()
    assert len(edges) == 31 and edges[0] == 5 and edges[-1] == 250
    assert modalsurv_bin(np.array([0.0, 13.16, 13.2, 300.0]), edges).tolist() == [0, 0, 1, 29]
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8]]))
    idx, event = torch.tensor([0, 2, 1]), torch.tensor([1.0, 0.0, 1.0])
    nll = (-np.log(0.5) - np.log(max(1 - 1.0, 1e-4)) - np.log(0.1)) / 3
    e_bin = np.array([0.3 + 0.4, 0.2 + 1.2, 0.1 + 1.6])
    # pairs (i event, κ_j > κ_i): (0,1), (0,2), (2,1)
    rank = np.mean([np.exp(-(e_bin[1] - e_bin[0])), np.exp(-(e_bin[2] - e_bin[0])), np.exp(-(e_bin[1] - e_bin[2]))])
    ours = deephit_loss(logits, idx, event, alpha=0.5, variant="modalsurv")
    assert ours.item() == pytest.approx(0.5 * nll + 0.5 * rank, rel=1e-5)
    one_event = deephit_loss(logits, idx, torch.tensor([1.0, 0.0, 0.0]), alpha=0.5, variant="modalsurv")
    assert one_event.item() == pytest.approx((-np.log(0.5) - np.log(1e-4) - np.log(1 - 0.2)) / 3, rel=1e-5)


def test_bce_class_weighting_and_registry_objects():
    logit, label = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([1.0, 0.0, 0.0])
    plain = bce_loss(logit, label).item()
    weighted = bce_loss(logit, label, pos_weight=2.0).item()
    assert weighted == pytest.approx(plain + np.log(2) / 3, rel=1e-6)
    assert balanced_pos_weight(np.array([1, 0, 0])) == 2.0
    outputs = {"risk": logit, "aux_loss": torch.tensor(0.25)}
    assert LOSSES.build({"name": "bce", "aux_weight": 2.0})(outputs, {"label": label}).item() == \
        pytest.approx(plain + 0.5, rel=1e-6)
    cox = LOSSES.build({"name": "cox", "ties": "efron"})
    tgt = {"time": torch.tensor([1.0, 2.0, 3.0]), "event": torch.tensor([1.0, 1.0, 0.0])}
    assert torch.isfinite(cox({"risk": logit}, tgt))
    dh = LOSSES.build({"name": "deephit_pycox", "cuts": [0.0, 1.5, 3.0]})
    assert torch.isfinite(dh({"logits": torch.randn(3, 3)}, tgt))
    assert set(LOSSES.names()) >= {"cox", "deephit_pycox", "deephit_modalsurv", "bce"}


def test_l1_alignment_detaches_the_encoder_side():
    enc = torch.tensor([[1.0, 2.0]], requires_grad=True)
    dec = torch.tensor([[0.0, 0.0]], requires_grad=True)
    loss = l1_alignment_loss([enc], [dec])
    loss.backward()
    assert loss.item() == pytest.approx(1.5)
    assert enc.grad is None and dec.grad.abs().sum() > 0
