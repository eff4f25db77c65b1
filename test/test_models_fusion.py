"""Fusion, MIL and head internals: LMF = tensor fusion, late fusion has zero interaction, no batch leakage."""

from __future__ import annotations

import itertools

import pytest
import torch
from test_models_network import FUSION_KWARGS, make_batch, small_config

from chimera_surv.models import FUSIONS, HEADS, MODALITY_ENCODERS, build_network, preset
from chimera_surv.models.fusion import LowRankMultimodal


@pytest.mark.parametrize("dims", [(3, 4), (2, 3, 4)])
def test_lmf_equals_explicit_tensor_fusion(dims):
    torch.manual_seed(0)
    lmf = LowRankMultimodal(list(dims), out=5, rank=3).double()
    xs = [torch.randn(6, d, dtype=torch.float64) for d in dims]
    # Reconstruct the full tensor-fusion weight W[i, j, (k,) o] = Σ_r w_r Π_m F_m[r, i_m, o].
    letters = "ijk"[: len(dims)]
    spec = ",".join(f"r{c}o" for c in letters)
    full = torch.einsum(f"r,{spec}->{letters}o", lmf.rank_weight[0], *lmf.factors)
    zs = [torch.cat([torch.ones(6, 1, dtype=torch.float64), x], 1) for x in xs]
    explicit = torch.einsum(f"{','.join('b' + c for c in letters)},{letters}o->bo", *zs, full) + lmf.bias
    assert torch.allclose(lmf(xs), explicit, atol=1e-10)


@pytest.mark.parametrize("fusion", sorted(FUSION_KWARGS))
def test_no_cross_sample_leakage_any_batch_size(fusion):
    """Eval outputs per patient do not depend on batch size or neighbours (the PG-MLIF LMF bug did)."""
    torch.manual_seed(4)
    net = build_network(small_config(fusion)).eval()
    batch = make_batch(5, present={"rna": [True, False, True, True, False]})
    with torch.no_grad():
        together = net(batch)["risk"]
        alone = torch.cat([net({k: v[i:i + 1] for k, v in batch.items()})["risk"] for i in range(5)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_late_fusion_has_zero_interaction_on_the_risk():
    torch.manual_seed(5)
    cfg = preset("seed000_late")
    cfg["modalities"] = {"rna": {"dim": 16}, "wsi": {"dim": 16}}
    net = build_network(cfg).eval()
    x_r, x_w, b_r, b_w = (torch.randn(8, 16) for _ in range(4))
    with torch.no_grad():
        def v(r, w):
            return net.fuse_and_head({"rna": r, "wsi": w})["risk"]

        interaction = v(x_r, x_w) - v(x_r, b_w) - v(b_r, x_w) + v(b_r, b_w)
    assert interaction.abs().max() < 1e-5
    bil = build_network({**cfg, "fusion": {"name": "pg_bilinear", "rank": 4, "pair_out": 4}}).eval()
    with torch.no_grad():
        def vb(r, w):
            return bil.fuse_and_head({"rna": r, "wsi": w})["risk"]

        inter_b = vb(x_r, x_w) - vb(x_r, b_w) - vb(b_r, x_w) + vb(b_r, b_w)
    assert inter_b.abs().max() > 1e-3  # a bilinear fusion does interact


def test_convex_gate_for_two_modalities_is_alpha_mix():
    torch.manual_seed(6)
    fusion = FUSIONS.build({"name": "gated_convex", "hidden": 4, "mlp_hidden": 3}, dims={"a": 5, "b": 6}).eval()
    ea, eb = torch.randn(2, 5), torch.randn(2, 6)
    g = fusion.gate(torch.cat([ea, eb], 1)).view(2, 2, 4)
    alpha = torch.sigmoid(g[:, 0] - g[:, 1])
    mix = alpha * fusion.proj["a"](ea) + (1 - alpha) * fusion.proj["b"](eb)
    pres = {"a": torch.ones(2, dtype=torch.bool), "b": torch.ones(2, dtype=torch.bool)}
    with torch.no_grad():
        assert torch.allclose(fusion({"a": ea, "b": eb}, pres)[0], fusion.mlp(fusion.norm(mix)), atol=1e-6)


def test_abmil_ignores_padding_and_patch_order():
    torch.manual_seed(7)
    enc = MODALITY_ENCODERS.build({"name": "abmil_gated", "dim": 8, "hidden": 6}).eval()
    bag = torch.randn(1, 5, 8)
    padded = torch.cat([bag, 100 * torch.randn(1, 3, 8)], 1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    perm = torch.randperm(5)
    with torch.no_grad():
        e1, a1 = enc(bag, None)
        e2, a2 = enc(padded, mask)
        e3, _ = enc(bag[:, perm], None)
    assert torch.allclose(e1, e2, atol=1e-6) and torch.allclose(e1, e3, atol=1e-6)
    assert torch.allclose(a2[0, :5], a1[0]) and (a2[0, 5:] == 0).all()
    mean = MODALITY_ENCODERS.build({"name": "mean_pool", "dim": 8}).eval()
    with torch.no_grad():
        assert torch.allclose(mean(padded, mask)[0], bag.mean(1), atol=1e-6)


def test_heads_outputs():
    x = torch.randn(4, 6)
    py = HEADS.build({"name": "deephit", "n_bins": 5, "bin_times": [0, 10, 20, 30, 40]}, in_dim=6)
    out = py(x)
    assert out["pmf"].shape == (4, 6) and torch.allclose(out["pmf"].sum(1), torch.ones(4))
    assert torch.allclose(out["risk"], -(out["pmf"] * torch.tensor([0, 10, 20, 30, 40, 40.0])).sum(1))
    ms = HEADS.build({"name": "deephit", "n_bins": 5, "variant": "modalsurv"}, in_dim=6)
    out = ms(x)
    assert out["pmf"].shape == (4, 5)
    assert torch.allclose(out["risk"], -(out["pmf"] * torch.arange(5.0)).sum(1))
    b = HEADS.build({"name": "binary"}, in_dim=6)(x)
    assert torch.allclose(b["probability"], torch.sigmoid(b["risk"]))
    bounded = HEADS.build({"name": "cox", "output_range": 6.0}, in_dim=6)
    with torch.no_grad():
        bounded.linear.weight.mul_(1000)
    assert bounded(x)["risk"].abs().max() <= 3.0


def test_deephit_event_probability_risk():
    """risk = logit P(T ≤ h), exact from the logits; it can rank differently from −E[T] and never saturates."""
    times = [0.0, 10.0, 20.0, 30.0, 40.0]
    head = HEADS.build({"name": "deephit", "n_bins": 5, "bin_times": times, "risk": "event_probability",
                        "horizon": 0.0}, in_dim=5)
    expected = HEADS.build({"name": "deephit", "n_bins": 5, "bin_times": times}, in_dim=5)
    for h in (head, expected):
        with torch.no_grad():
            h.linear.weight.copy_(torch.eye(5))
            h.linear.bias.zero_()
    # A: half its mass at t = 0, half beyond the grid; B: all its mass at t = 10.
    x = torch.tensor([[0.0, -30, -30, -30, -30], [-30.0, 30, -30, -30, -30]])
    with torch.no_grad():
        out, ref = head(x), expected(x)
    f = out["pmf"][:, :1].sum(1).double()
    assert torch.allclose(out["risk"].double(), torch.log(f / (1 - f)), atol=1e-4, rtol=1e-4)
    assert out["risk"][0] > out["risk"][1] and ref["risk"][0] < ref["risk"][1]  # the two rankings disagree
    assert torch.isfinite(out["risk"]).all() and out["risk"][1] < -50  # F ≈ e^-60: no log(0)
    wide = HEADS.build({"name": "deephit", "n_bins": 5, "bin_times": times, "risk": "event_probability",
                        "horizon": 1e9}, in_dim=5)
    assert wide.horizon_bins == 5  # pycox: the beyond-grid class stays on the far side
    with pytest.raises(ValueError, match="horizon"):
        HEADS.build({"name": "deephit", "risk": "event_probability"}, in_dim=5)


def test_crossattention_len1_is_linear_in_the_other_modality():
    """seed-methods §1.2/§4.2: with M=2 the attention over one key is a linear map of the other modality."""
    torch.manual_seed(8)
    f = FUSIONS.build({"name": "crossattn_gated", "dim": 8, "heads": 2, "gated": False, "dropout": 0.0},
                      dims={"a": 8, "b": 8}).eval()
    pres = {"a": torch.ones(3, dtype=torch.bool), "b": torch.ones(3, dtype=torch.bool)}
    ea, eb1, eb2 = torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, 8)
    ea2 = torch.randn(3, 8)
    with torch.no_grad():
        # a_a depends on e_b only: changing the query e_a alone leaves a_a unchanged
        a1 = f.attn["a"](ea.unsqueeze(1), eb1.unsqueeze(1), eb1.unsqueeze(1))[0]
        a2 = f.attn["a"](ea2.unsqueeze(1), eb1.unsqueeze(1), eb1.unsqueeze(1))[0]
        lin = [f.attn["a"](ea.unsqueeze(1), e.unsqueeze(1), e.unsqueeze(1))[0] for e in (eb1, eb2, eb1 + eb2)]
    assert torch.allclose(a1, a2, atol=1e-6)
    bias = f.attn["a"].out_proj.bias + f.attn["a"].out_proj.weight @ f.attn["a"].in_proj_bias[16:]
    assert torch.allclose(lin[2] - bias, (lin[0] - bias) + (lin[1] - bias), atol=1e-5)
    _ = f({"a": ea, "b": eb1}, pres)  # and the module itself runs


def test_pairs_cover_every_modality_pair():
    f = FUSIONS.build({"name": "pg_bilinear", "rank": 2, "pair_out": 1}, dims={"a": 2, "b": 2, "c": 2, "d": 2})
    assert f.pairs == list(itertools.combinations("abcd", 2)) and f.out_dim == 6
