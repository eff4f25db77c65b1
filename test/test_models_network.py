"""build_network contract: every fusion × missing modality × batch size, embed/fuse split, seed sizes."""

from __future__ import annotations

import json

import pytest
import torch

from chimera_surv.models import FUSIONS, build_network, count_parameters, preset

SMALL_MODALITIES = {
    "wsi": {"dim": 32, "encoder": {"name": "abmil_gated", "hidden": 16, "dropout": 0.25}},
    "clinical": {"dim": 7, "encoder": {"name": "identity"}},
    "rna": {"dim": 40, "encoder": {"name": "rna_mlp", "hidden": [32, 16, 8]}},
}
# Small kwargs per fusion so the matrix runs in seconds; every registered fusion must appear here.
FUSION_KWARGS = {
    "concat_mlp": {"hidden": [16, 8]},
    "late_sum": {"out": 1},
    "pg_bilinear": {"rank": 8, "pair_out": 4},
    "pg_res": {"rank": 8, "pair_out": 4, "residual": 6},
    "bilinear_main": {"rank": 8, "hidden": 8},
    "bilinear_product": {"rank": 8, "hidden": 8},
    "gated": {"hidden": 8, "mlp_hidden": 8},
    "gated_convex": {"hidden": 8, "mlp_hidden": 8},
    "crossattn_concat": {"hidden": 8, "heads": 2, "mlp_hidden": 8},
    "crossattn_gated": {"dim": 8, "heads": 2},
    "lmf": {"out": 8, "rank": 3},
    "ca_mlif": {"dim": 8, "n_tokens": 2, "heads": 2, "mmhid": 8},
    "ca_mlif_efficient": {"dim": 8, "n_tokens": 2, "heads": 2, "ca_heads": 2, "mmhid": 8},
}
HEADS = [{"name": "cox"}, {"name": "deephit", "n_bins": 5}, {"name": "binary"}]


def small_config(fusion: str, head: dict | None = None) -> dict:
    return {"modalities": json.loads(json.dumps(SMALL_MODALITIES)),
            "fusion": {"name": fusion, **FUSION_KWARGS[fusion]}, "head": head or {"name": "cox"}}


def make_batch(b: int, n: int = 12, present: dict[str, list[bool]] | None = None, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {"wsi": torch.randn(b, n, 32, generator=g), "wsi_mask": torch.ones(b, n, dtype=torch.bool),
             "clinical": torch.randn(b, 7, generator=g), "rna": torch.randn(b, 40, generator=g)}
    batch["wsi_mask"][:, n - 3:] = False  # padded tail
    for m in ("wsi", "clinical", "rna"):
        flags = (present or {}).get(m, [True] * b)
        batch[f"{m}_present"] = torch.tensor(flags)
    return batch


def test_every_registered_fusion_is_covered():
    assert sorted(FUSION_KWARGS) == FUSIONS.names()


@pytest.mark.parametrize("fusion", sorted(FUSION_KWARGS))
def test_fusion_handles_missing_modalities_and_batch_of_one(fusion):
    torch.manual_seed(0)
    net = build_network(small_config(fusion)).eval()
    with torch.no_grad():
        full = net(make_batch(4))
        patterns = {"wsi": [False, True, True, False], "clinical": [True, False, True, False],
                    "rna": [True, True, False, False]}
        partial = net(make_batch(4, present=patterns))
        one = net(make_batch(1))
        alone = net({"clinical": torch.randn(1, 7)})  # other modalities absent from the batch entirely
    for out, b in ((full, 4), (partial, 4), (one, 1), (alone, 1)):
        assert out["risk"].shape == (b,)
        assert torch.isfinite(out["risk"]).all()
    # A missing modality must change the prediction (the token replaced the embedding) ...
    assert not torch.allclose(full["risk"][:3], partial["risk"][:3])
    # ... and row 3 (clinical only) must not depend on the absent modalities' tensors.
    b2 = make_batch(4, present=patterns, seed=1)
    b2["clinical"] = make_batch(4, present=patterns)["clinical"]
    with torch.no_grad():
        again = net(b2)
    assert torch.allclose(again["risk"][3], partial["risk"][3], atol=1e-6)


@pytest.mark.parametrize("head", HEADS, ids=lambda h: h["name"])
def test_forward_equals_fuse_and_head_of_embed(head):
    torch.manual_seed(1)
    net = build_network(small_config("pg_bilinear", head)).eval()
    batch = make_batch(3, present={"rna": [True, False, True]})
    with torch.no_grad():
        out = net(batch)
        again = net.fuse_and_head(net.embed(batch), net.present(batch))
    assert torch.equal(out["risk"], again["risk"])
    assert set(net.embed(batch)) == {"wsi", "clinical", "rna"}
    assert net.embed(batch)["rna"].shape == (3, 8)


def test_attention_is_returned_masked_and_normalised():
    net = build_network(small_config("concat_mlp")).eval()
    batch = make_batch(2, n=10)
    with torch.no_grad():
        out = net(batch)
    att = out["attention"]
    assert att.shape == (2, 10)
    assert torch.allclose(att.sum(1), torch.ones(2))
    assert (att[:, 7:] == 0).all()


def test_empty_bag_counts_as_missing_and_never_nans():
    net = build_network(small_config("crossattn_gated")).eval()
    batch = make_batch(2)
    batch["wsi_mask"][0] = False  # patient 0 has no valid patch
    empty = {**make_batch(1), "wsi": torch.zeros(1, 0, 32), "wsi_mask": torch.zeros(1, 0, dtype=torch.bool)}
    with torch.no_grad():
        out = net(batch)
        out_empty = net(empty)
        flagged = net(make_batch(2, present={"wsi": [False, True]}))
    assert torch.isfinite(out["risk"]).all() and torch.isfinite(out_empty["risk"]).all()
    assert not net.present(batch)["wsi"][0]
    assert torch.allclose(out["risk"][0], flagged["risk"][0], atol=1e-6)


def test_training_mode_backward_reaches_encoders_and_missing_tokens():
    torch.manual_seed(2)
    net = build_network(small_config("lmf")).train()
    out = net(make_batch(4, present={"rna": [True, False, True, False]}))
    out["risk"].sum().backward()
    assert net.encoders["wsi"].project[0].weight.grad.abs().sum() > 0
    assert net.missing_tokens["rna"].grad.abs().sum() > 0


def test_ca_mlif_returns_alignment_loss():
    net = build_network(small_config("ca_mlif")).train()
    out = net(make_batch(3))
    assert out["aux_loss"].ndim == 0 and out["aux_loss"] > 0


def test_config_must_be_json_and_unknown_names_fail_clearly():
    cfg = small_config("lmf")
    cfg["fusion"]["rank"] = {1, 2}  # a set is not JSON
    with pytest.raises(TypeError):
        build_network(cfg)
    cfg = small_config("lmf")
    cfg["fusion"]["name"] = "nope"
    with pytest.raises(KeyError, match="unknown fusion 'nope'"):
        build_network(cfg)


def test_state_dict_round_trip_rebuilds_identical_outputs():
    torch.manual_seed(3)
    net = build_network(small_config("crossattn_concat")).eval()
    clone = build_network(json.loads(json.dumps(net.config))).eval()
    clone.load_state_dict(net.state_dict(), strict=True)
    batch = make_batch(2)
    with torch.no_grad():
        assert torch.equal(net(batch)["risk"], clone(batch)["risk"])


# The four seed 000 architectures at the paper's sizes: counts of the code (seed-methods.md §1.2);
# the paper prints them rounded (8.8M, 1.8M, 0.54M, 3.2M).
SEED000 = {"seed000_mlp": (8_800_657, 8.8e6), "seed000_crossattn": (1_839_105, 1.8e6),
           "seed000_bilinear": (537_345, 0.54e6), "seed000_gated": (3_180_673, 3.2e6)}


@pytest.mark.parametrize("name", sorted(SEED000))
def test_seed000_parameter_counts(name):
    code_count, paper = SEED000[name]
    with torch.device("meta"):
        net = build_network(preset(name))
    n = count_parameters(net)
    assert n == code_count  # the seed code's exact count
    assert float(f"{n:.2g}") == paper  # the paper's two significant figures
    # within 1% of the paper except cross-attention: 1.839M printed as "1.8M" (2.2% off, rounding only)
    assert abs(n - paper) / paper < (0.025 if name == "seed000_crossattn" else 0.01)
