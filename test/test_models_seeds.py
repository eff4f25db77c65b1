"""Seed fidelity: the seed architectures' widths, parameter counts and forward formulas against their released
definitions (seed 002 `Docker/model/model_abmil.py`) and papers (seed 000 ⊙ bilinear, seed 001 CA-MLIF)."""

from __future__ import annotations

import math

import pytest
import torch
from test_models_network import make_batch, small_config

from chimera_surv.models import FUSIONS, build_network, count_parameters, preset


def linear(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


# Seed 002's released classes (hassancpu/ChimeraChallenge2025_Task_3 @46c95e4, Docker/model/model_abmil.py),
# counted layer by layer: uni sizes [1024, 512, 256], 27 clinical dims, 19,359 genes, rank 64.
ATTENTION = linear(1024, 512) + 2 * linear(512, 256) + linear(256, 1)  # fc + Attn_Net_Gated (a, b, c)
RNA = linear(19359, 2048) + linear(2048, 512) + linear(512, 128)  # RNAEncoder
LRB = (linear(512, 64) + linear(128, 64) + linear(64, 64)  # fuse_hr
       + linear(512, 64) + linear(27, 64) + linear(64, 32)  # fuse_hc
       + linear(128, 64) + linear(27, 64) + linear(64, 32))  # fuse_rc
RELEASED = {
    "seed002_abmil_surv": (ATTENTION + RNA + linear(512 + 27 + 128, 1), 667),
    "seed002_abmil_pg": (ATTENTION + RNA + LRB + linear(64 + 32 + 32, 1), 128),
    "seed002_abmil_pg_res": (ATTENTION + RNA + LRB + linear(512 + 128 + 27, 128) + linear(64 + 32 + 32 + 128, 1),
                             256),
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_seed002_counts_and_classifier_width_match_the_released_classes(name):
    count, width = RELEASED[name]
    with torch.device("meta"):
        net = build_network(preset(name))
    assert count_parameters(net) == count
    assert net.fusion.out_dim == width and net.head.linear.in_features == width
    assert net.encoders["wsi"].out_dim == 512 and net.encoders["wsi"].attn_score.in_features == 256
    assert net.encoders["rna"].out_dim == 128
    if name == "seed002_abmil_pg_res":
        assert count == 41_731_586
        assert net.fusion.residual[0].in_features == 667 and net.fusion.residual[0].out_features == 128


def test_seed002_xavier_normal_on_every_linear():
    torch.manual_seed(0)
    cfg = preset("seed002_abmil_pg_res")
    cfg["modalities"]["rna"]["dim"] = 300  # the init rule, not the 40M-parameter gene layer, is under test
    net = build_network(cfg)
    layers = [(n, m) for n, m in net.named_modules() if isinstance(m, torch.nn.Linear)]
    assert {n.split(".")[0] for n, _ in layers} == {"encoders", "fusion", "head"}
    for name, layer in layers:
        assert torch.count_nonzero(layer.bias) == 0, name
    for name in ("encoders.wsi.project.0", "encoders.rna.body.0", "fusion.residual.0"):
        w = dict(net.named_modules())[name].weight
        expected = math.sqrt(2.0 / (w.shape[0] + w.shape[1]))  # xavier-normal std; PyTorch's default is ≈ half
        assert abs(float(w.detach().std()) / expected - 1) < 0.05, name
    default = build_network({**cfg, "init": "default"})
    assert torch.count_nonzero(default.head.linear.bias) == 1


def test_pg_res_forward_is_the_released_formula():
    """risk = classifier([hr; hc; rc; ReLU(residual_proj([M; rna; clin]))]) with LRB y = out(f1 x1 ⊙ f2 x2)."""
    torch.manual_seed(1)
    net = build_network(small_config("pg_res")).eval()
    batch = make_batch(3)
    with torch.no_grad():
        e = net.embed(batch)
        f = net.fusion

        def lrb(key, x1, x2):
            m = f.lrb[key]
            return m.o(m.p1(x1) * m.p2(x2))

        res = torch.relu(f.residual[0](torch.cat([e["wsi"], e["clinical"], e["rna"]], 1)))
        parts = [lrb("wsi*clinical", e["wsi"], e["clinical"]), lrb("wsi*rna", e["wsi"], e["rna"]),
                 lrb("clinical*rna", e["clinical"], e["rna"]), res]
        expected = net.head.linear(torch.cat(parts, 1)).squeeze(1)
        assert torch.allclose(net(batch)["risk"], expected, atol=1e-6)


def test_seed000_pure_product_bilinear_has_no_main_effects():
    """The paper's z = (W1·RNA) ⊙ (W2·WSI), W_i ∈ R^{64×2048}: the code's BN + MLP after z, no bias, no main terms."""
    with torch.device("meta"):
        net = build_network(preset("seed000_bilinear_product"))
    assert count_parameters(net) == 2 * linear(2048, 64, bias=False) + 2 * 64 + linear(64, 64) + linear(64, 1)
    torch.manual_seed(2)
    fusion = FUSIONS.build({"name": "bilinear_product", "rank": 4, "hidden": 3}, dims={"rna": 6, "wsi": 5}).eval()
    code = FUSIONS.build({"name": "bilinear_main", "rank": 4, "hidden": 3}, dims={"rna": 6, "wsi": 5}).eval()
    pres = {m: torch.ones(4, dtype=torch.bool) for m in ("rna", "wsi")}
    zero_rna = torch.zeros(4, 6)
    with torch.no_grad():
        a = fusion({"rna": zero_rna, "wsi": torch.randn(4, 5)}, pres)[0]
        b = fusion({"rna": zero_rna, "wsi": torch.randn(4, 5)}, pres)[0]
        c = code({"rna": zero_rna, "wsi": torch.randn(4, 5)}, pres)[0]
        d = code({"rna": zero_rna, "wsi": torch.randn(4, 5)}, pres)[0]
    assert torch.equal(a, b)  # with one factor at 0 the product is 0 whatever the other modality is
    assert not torch.allclose(c, d)  # the code's variant keeps WSI main effects


def test_ca_mlif_follows_the_paper():
    torch.manual_seed(3)
    cfg = small_config("ca_mlif_efficient")
    net = build_network(cfg).eval()
    f = net.fusion
    for t in (f.enc_p, f.enc_c, f.dec_p, f.dec_c):
        assert len(t.attns) == 2 and len(t.norms) == 2  # eq. 1–2: two pre-LN self-attention layers
    assert f.clinical == "clinical" and f.token_names == ["wsi", "rna"]
    assert f.mlp[0].in_features == 2 * 8 + 2 * 8 + 7  # [OWC output (2·mmhid + 2·dim); clinical]
    assert f.ca.heads == 2  # the encoder's heads (paper)
    # Efficient CA: P's output = [U_P ; X_C^res] along tokens, U_P = X_P^inter · softmax_rows(K_Cᵀ V_C / n_C).
    p, c = torch.randn(2, 2, 8), torch.randn(2, 2, 8)
    with torch.no_grad():
        p_out, c_out = f.ca(p, c)
        k, v = f.ca.c.key(c).view(2, 2, 2, 4).transpose(1, 2), f.ca.c.value(c).view(2, 2, 2, 4).transpose(1, 2)
        g_c = torch.softmax(k.transpose(-1, -2) @ v / 2, dim=-1)
        u_p = (f.ca.p.inter(p).view(2, 2, 2, 4).transpose(1, 2) @ g_c).transpose(1, 2).flatten(2)
    assert p_out.shape == (2, 4, 8) and c_out.shape == (2, 4, 8)
    assert torch.allclose(p_out[:, :2], u_p, atol=1e-6)
    assert torch.allclose(p_out[:, 2:], f.ca.c.res(c), atol=1e-6) and torch.allclose(c_out[:, 2:], f.ca.p.res(p))
    # clinical reaches the final MLP (it is not tokenised) and changes the risk
    batch = make_batch(2)
    other = {**batch, "clinical": batch["clinical"] + 1.0}
    with torch.no_grad():
        assert not torch.allclose(net(batch)["risk"], net(other)["risk"])
    code = FUSIONS.build({"name": "ca_mlif", "dim": 8, "n_tokens": 2, "heads": 2, "layers": 1, "clinical": None},
                         dims={"wsi": 4, "rna": 5, "clinical": 3})
    assert len(code.enc_p.attns) == 1 and code.token_names == ["wsi", "rna", "clinical"]
    two = FUSIONS.build({"name": "ca_mlif", "dim": 8, "n_tokens": 2, "heads": 2}, dims={"wsi": 4, "clinical": 3})
    assert two.clinical is None  # with two modalities clinical is C (the CA needs two token streams)
