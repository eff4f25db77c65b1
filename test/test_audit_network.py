"""audit_network: the embed / fuse_and_head adapter, checked on small networks with known structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from chimera_surv.audit.network import audit_network, embed_batch


class ToyNet(nn.Module):
    """Two vector modalities; ``fusion='late'`` sums per-modality risks, ``'bilinear'`` adds a product term."""

    def __init__(self, fusion: str, dims: dict[str, int], seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.modalities = list(dims)
        self.fusion = fusion
        self.enc = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Dropout(0.5))
                                  for m, d in dims.items()})
        self.heads = nn.ModuleDict({m: nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
                                    for m in dims})
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.randn(8)) for m in dims})
        self.bil = nn.Bilinear(8, 8, 1)

    def embed(self, batch):
        return {m: self.enc[m](batch[m]) for m in self.modalities}

    def fuse_and_head(self, embeddings, present):
        emb = {m: torch.where(present[m][:, None], e, self.missing[m].to(e.dtype)) for m, e in embeddings.items()}
        risk = sum(self.heads[m](emb[m])[:, 0] for m in self.modalities)
        if self.fusion == "bilinear":
            a, b = (emb[m] for m in self.modalities[:2])
            risk = risk + 3.0 * self.bil(a, b)[:, 0]
        return {"risk": risk}

    def forward(self, batch):
        present = {m: batch.get(f"{m}_present", torch.ones(len(batch[m]), dtype=torch.bool))
                   for m in self.modalities}
        return self.fuse_and_head(self.embed(batch), present)


def _batch(n: int, dims: dict[str, int], seed: int, missing: float = 0.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {m: torch.randn(n, d, generator=g) for m, d in dims.items()}
    for m in dims:
        batch[f"{m}_present"] = torch.rand(n, generator=g) >= missing
    return batch


DIMS = {"wsi": 6, "rna": 5, "clinical": 3}


@pytest.mark.parametrize("masker", ["mean", "zero", "absent", {"name": "shuffle", "k": 16}], ids=str)
def test_late_fusion_network_has_no_interaction(masker) -> None:
    net = ToyNet("late", DIMS)
    batch, bg = _batch(30, DIMS, 1, missing=0.2), _batch(40, DIMS, 2, missing=0.2)
    res = audit_network(net, batch, masker=masker, background_batch=bg)
    for name, est in res.estimates().items():
        assert abs(est.interaction_pct) < 1e-12, name
    assert np.abs(res.matrix[:, ~np.eye(3, dtype=bool)]).max() < 1e-12
    assert np.abs(res.shapley).mean() > 1e-3  # the model does use its inputs


def test_bilinear_network_interacts_and_values_match_forward() -> None:
    net = ToyNet("bilinear", DIMS)
    net.train()  # dropout on: the audit must switch to eval and restore the flag
    batch, bg = _batch(25, DIMS, 3), _batch(50, DIMS, 4)
    bg_emb = embed_batch(net, bg)
    assert net.training
    res = audit_network(net, batch, bg_emb, "mean")
    assert net.training
    assert next(net.parameters()).dtype == torch.float32  # audited on a float64 copy
    net.eval()
    with torch.no_grad():
        full = net(batch)["risk"].double().numpy()
    np.testing.assert_allclose(res.full_value, full, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(res.matrix.sum((1, 2)), res.full_value - res.base_value, atol=1e-12)
    orig = res.estimate("orig_mean_abs").interaction_pct
    assert 1.0 < orig < 100.0
    # only wsi-rna interacts: clinical pairs are zero
    assert np.abs(res.matrix[:, 0, 2]).max() < 1e-12 and np.abs(res.matrix[:, 1, 2]).max() < 1e-12
    assert np.abs(res.matrix[:, 0, 1]).mean() > 1e-3
    assert res.modalities == ["wsi", "rna", "clinical"]


def test_missing_modality_stays_missing_and_expected_time_flips_sign() -> None:
    net = ToyNet("bilinear", DIMS)
    batch = _batch(10, DIMS, 5)
    batch["rna_present"][:] = False
    bg = embed_batch(net, _batch(20, DIMS, 6))
    res = audit_network(net, batch, bg, "mean")
    # rna absent for every patient: all coalitions see the same learned missing token, so phi_rna is 0
    assert np.abs(res.shapley[:, 1]).max() < 1e-12
    neg = audit_network(net, batch, bg, "mean", output="expected_time")
    np.testing.assert_allclose(neg.matrix, -res.matrix, atol=1e-12)
    assert neg.estimate("orig_mean_abs").interaction_pct == pytest.approx(
        res.estimate("orig_mean_abs").interaction_pct, abs=1e-9)
    with pytest.raises(ValueError):
        audit_network(net, batch, masker="mean")


def test_missing_policy_masked_attributes_missingness() -> None:
    net = ToyNet("late", DIMS)
    batch = _batch(10, DIMS, 7)
    batch["rna_present"][:3] = False
    bg = embed_batch(net, _batch(20, DIMS, 8))
    null = audit_network(net, batch, bg, "mean")
    masked = audit_network(net, batch, bg, "mean", missing="masked")
    assert np.abs(null.shapley[:3, 1]).max() < 1e-12
    assert np.abs(masked.shapley[:3, 1]).min() > 1e-6  # missing token vs mean embedding
    np.testing.assert_allclose(null.shapley[3:], masked.shapley[3:], atol=1e-12)


def _real_config(fusion: dict) -> dict:
    return {"modalities": {"wsi": {"dim": 12, "encoder": {"name": "abmil_gated", "hidden": 8}},
                           "rna": {"dim": 6, "encoder": {"name": "mlp", "hidden": [8]}},
                           "clinical": {"dim": 4, "encoder": {"name": "identity"}}},
            "fusion": fusion, "head": {"name": "cox"}}


def _real_batch(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, 7, generator=g) > 0.3
    mask[:, 0] = True
    return {"wsi": torch.randn(n, 7, 12, generator=g), "wsi_mask": mask, "wsi_present": torch.ones(n, dtype=torch.bool),
            "rna": torch.randn(n, 6, generator=g), "rna_present": torch.rand(n, generator=g) > 0.2,
            "clinical": torch.randn(n, 4, generator=g), "clinical_present": torch.ones(n, dtype=torch.bool)}


@pytest.mark.parametrize("masker", ["mean", "absent", {"name": "shuffle", "k": 8}], ids=str)
def test_real_late_fusion_network_computes_zero_interaction(masker) -> None:
    from chimera_surv.models import build_network

    torch.manual_seed(0)
    net = build_network(_real_config({"name": "late_sum", "hidden": [8], "out": 1}))
    with torch.no_grad():  # non-trivial missing tokens
        for p in net.missing_tokens.values():
            p.normal_()
    res = audit_network(net, _real_batch(20, 1), masker=masker, background_batch=_real_batch(30, 2))
    assert res.modalities == ["wsi", "rna", "clinical"]
    for name, est in res.estimates().items():
        assert abs(est.interaction_pct) < 1e-12, name
    assert np.abs(res.shapley).mean() > 1e-4


def test_real_concat_network_interacts_and_full_coalition_is_forward() -> None:
    from chimera_surv.models import build_network

    torch.manual_seed(0)
    net = build_network(_real_config({"name": "concat_mlp", "hidden": [16, 8], "dropout": 0.0}))
    batch = _real_batch(20, 3)
    res = audit_network(net, batch, masker="mean", background_batch=_real_batch(30, 4))
    net.eval()
    with torch.no_grad():
        forward = net(batch)["risk"].double().numpy()
    np.testing.assert_allclose(res.full_value, forward, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(res.matrix.sum((1, 2)), res.full_value - res.base_value, atol=1e-12)
    assert res.estimate("orig_mean_abs").interaction_pct > 1e-3
