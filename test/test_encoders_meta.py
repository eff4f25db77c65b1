"""The large architectures, checked on the meta device (no weights, no memory) against stored key/shape lists."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from chimera_surv.encoders import build_meta, expected_shapes, get_spec, load_encoder, stored_key_shapes
from chimera_surv.encoders.base import WeightMismatch, compare_shapes

# Parameter counts of the published models (ecosystem.md §2, MONAI's resnet10 for MedicalNet).
PUBLISHED_PARAMS_M = {"uni": 303.4, "uni2-h": 681.4, "h-optimus-0": 1134.8, "virchow2": 631.2,
                      "medicalnet-resnet10": 14.4}
LARGE = ["uni", "uni2-h", "h-optimus-0", "virchow2", "h0-mini", "resnet50-trunc", "medicalnet-resnet10",
         "medicalnet-resnet18"]


@pytest.mark.parametrize("name", LARGE)
def test_meta_architecture_matches_the_stored_key_list(name: str) -> None:
    model = build_meta(name)
    assert all(p.is_meta for p in model.parameters())
    shapes = expected_shapes(model)
    compare_shapes(stored_key_shapes(name), shapes, f"stored list for {name}")  # raises with the keys if not
    if name in PUBLISHED_PARAMS_M:
        params = sum(math.prod(s) for k, s in shapes.items() if "running" not in k and "num_batches" not in k)
        assert params / 1e6 == pytest.approx(PUBLISHED_PARAMS_M[name], abs=0.1)


@pytest.mark.parametrize("name", ["uni", "virchow2", "h0-mini", "resnet50-trunc", "medicalnet-resnet10"])
def test_meta_forward_gives_the_declared_output_size(name: str) -> None:
    spec = get_spec(name)
    model = build_meta(name)
    shape = (1, 3, 16, 32, 32) if spec.modality == "mri" else (2, 3, spec.input_size, spec.input_size)
    out = model(torch.empty(shape, device="meta"))
    assert out.shape[-1] == spec.dim


def test_h0_mini_is_a_distilled_vit_b14_with_registers_and_swiglu() -> None:
    """H0-mini (bioptimus): ViT-B/14, 4 registers, SwiGLU MLP (fc1 packs two 2048-wide halves), ~86 M parameters;
    the embedding is cat(class token, mean of the 256 patch tokens) = 1536."""
    shapes = stored_key_shapes("h0-mini")
    assert shapes["reg_token"] == [1, 4, 768] and shapes["patch_embed.proj.weight"] == [768, 3, 14, 14]
    assert shapes["blocks.11.mlp.fc1.weight"] == [4096, 768] and shapes["blocks.11.mlp.fc2.weight"] == [768, 2048]
    assert "blocks.12.norm1.weight" not in shapes and "head.weight" not in shapes
    assert sum(math.prod(s) for s in shapes.values()) / 1e6 == pytest.approx(86, abs=0.5)
    from chimera_surv.encoders.pathology import _class_and_mean_patch

    tokens = torch.arange(2 * 261 * 3, dtype=torch.float32).reshape(2, 261, 3)
    pooled = _class_and_mean_patch(tokens)
    assert torch.equal(pooled[:, 3:], tokens[:, 5:].mean(1))  # registers excluded from the mean


def test_a_changed_architecture_is_caught() -> None:
    stored = stored_key_shapes("uni")
    tampered = dict(stored)
    tampered["blocks.0.attn.qkv.weight"] = [1, 1]
    tampered.pop("norm.bias")
    with pytest.raises(WeightMismatch, match="norm.bias"):
        compare_shapes(stored, tampered, "tampered")


def test_truncated_resnet_loads_a_full_resnet50_checkpoint(tmp_path: Path) -> None:
    """The ImageNet file has layer4/fc; the truncated entry ignores exactly those and checks the rest strictly."""
    import timm
    from safetensors.torch import save_file

    full = timm.create_model("resnet50", pretrained=False, num_classes=1000)
    state = {k: v.contiguous() for k, v in full.state_dict().items()}
    (tmp_path / "resnet50-trunc").mkdir()
    save_file(state, str(tmp_path / "resnet50-trunc" / "model.safetensors"))
    encoder = load_encoder("resnet50-trunc", tmp_path, "cpu")
    assert torch.equal(encoder.trunk.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    out = encoder.embed(torch.zeros(1, 3, 224, 224, dtype=torch.uint8))
    assert out.shape == (1, 1024) and torch.isfinite(out).all()
