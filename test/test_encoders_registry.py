"""Encoder registry: the seeded test encoder, strict loading from local files, and the loud failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from chimera_surv.encoders import (
    ENCODERS,
    MissingWeights,
    WeightMismatch,
    get_spec,
    load_encoder,
    write_encoder_weights,
)

EXPECTED = {"uni", "uni2-h", "h-optimus-0", "virchow2", "resnet50-trunc", "test-tiny", "medicalnet-resnet10",
            "medicalnet-resnet18"}


def _patches(seed: int = 0, n: int = 4) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, 224, 224), dtype=np.uint8))


def test_every_entry_is_registered_with_its_facts() -> None:
    assert EXPECTED <= set(ENCODERS.names())
    dims = {"uni": 1024, "uni2-h": 1536, "h-optimus-0": 1536, "virchow2": 2560, "resnet50-trunc": 1024,
            "test-tiny": 64}
    for name, dim in dims.items():
        spec = get_spec(name)
        assert spec.dim == dim and spec.modality == "pathology" and spec.weight_files
        assert spec.precision in ("fp16", "bf16", "fp32")
    assert [n for n in ENCODERS.names() if get_spec(n).seeded] == ["test-tiny"]  # only the test net is seedable
    assert get_spec("h-optimus-0").mean != get_spec("uni").mean
    with pytest.raises(KeyError, match="unknown encoder"):
        get_spec("not-an-encoder")


def test_tiny_encoder_is_seeded_small_and_deterministic(tmp_path: Path) -> None:
    first = load_encoder("test-tiny", tmp_path, "cpu", weights="seeded")
    torch.manual_seed(123)  # the global RNG must not matter
    second = load_encoder("test-tiny", None, "cpu", weights="seeded")
    assert sum(p.numel() for p in first.parameters()) < 20_000
    a, b = first.embed(_patches()), second.embed(_patches())
    assert a.shape == (4, 64) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1])  # different patches, different features
    assert not any(p.requires_grad for p in first.parameters())


def test_written_weights_go_through_the_strict_loader(tmp_path: Path) -> None:
    path = write_encoder_weights("test-tiny", tmp_path, seed=7)
    assert path == tmp_path / "test-tiny" / "model.safetensors"
    loaded = load_encoder("test-tiny", tmp_path, "cpu")  # weights="file": needs and uses the file
    seeded = load_encoder("test-tiny", None, "cpu", weights="seeded")  # seed 0
    assert not torch.equal(loaded.embed(_patches()), seeded.embed(_patches()))
    again = load_encoder("test-tiny", tmp_path, "cpu", weights="seeded")  # a present file wins over the seed
    assert torch.equal(loaded.embed(_patches()), again.embed(_patches()))


def test_missing_weights_name_the_expected_path(tmp_path: Path) -> None:
    with pytest.raises(MissingWeights) as error:
        load_encoder("uni", tmp_path, "cpu")
    assert str(tmp_path / "uni" / "model.safetensors") in str(error.value)
    assert "pytorch_model.bin" in str(error.value)
    with pytest.raises(MissingWeights):
        load_encoder("test-tiny", tmp_path, "cpu")  # the default still requires a file
    with pytest.raises(ValueError, match="no seeded mode"):
        load_encoder("uni", tmp_path, "cpu", weights="seeded")


def test_wrong_weights_list_the_mismatched_keys(tmp_path: Path) -> None:
    path = write_encoder_weights("test-tiny", tmp_path)
    state = load_file(str(path))
    state["stem.weight"] = torch.zeros(9, 3, 4, 4)  # wrong shape
    state["extra.bias"] = torch.zeros(3)  # unexpected
    del state["head.bias"]  # missing
    save_file(state, str(path))
    with pytest.raises(WeightMismatch) as error:
        load_encoder("test-tiny", tmp_path, "cpu")
    message = str(error.value)
    assert "head.bias" in message and "extra.bias" in message and "stem.weight" in message
    assert "[9, 3, 4, 4]" in message


def test_medicalnet_style_pth_loads_with_weights_only(tmp_path: Path) -> None:
    """MedicalNet ships `pretrain.pth` = {"state_dict": {"module.<key>": ...}} plus a `conv_seg` head."""
    from chimera_surv.encoders import ENCODERS
    from chimera_surv.encoders.base import seeded_init_

    reference = seeded_init_(ENCODERS.build("medicalnet-resnet10"), seed=3)
    state = {f"module.{k}": v.clone() for k, v in reference.trunk.state_dict().items()}
    state["module.conv_seg.0.weight"] = torch.zeros(32, 512, 3, 3, 3)
    (tmp_path / "medicalnet-resnet10").mkdir()
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "medicalnet-resnet10" / "pretrain.pth")
    encoder = load_encoder("medicalnet-resnet10", tmp_path, "cpu")
    assert torch.equal(encoder.trunk.layer4[0].conv2.weight, reference.trunk.layer4[0].conv2.weight)
    assert torch.equal(encoder.trunk.bn1.running_var, reference.trunk.bn1.running_var)
