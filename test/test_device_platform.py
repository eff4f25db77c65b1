"""Device choice, autocast dtype by compute capability (with fakes: no GPU here), and the startup/DEGRADED lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from chimera_surv import device as device_module
from chimera_surv.device import autocast_dtype, driver_version, gpu_requested, resolve_device


@pytest.mark.parametrize(("capability", "precision", "expected"), [
    ((7, 5), "fp16", torch.float16),   # T4: no bf16 units
    ((7, 5), "bf16", torch.float16),   # an entry that prefers bf16 still gets fp16 on a T4
    ((8, 0), "fp16", torch.bfloat16),  # A100
    ((8, 6), "fp16", torch.bfloat16),  # A10G
    ((9, 0), "bf16", torch.bfloat16),  # H100/H200
    ((8, 6), "fp32", None),
    (None, "fp16", None),              # the CPU
])
def test_autocast_dtype_follows_the_compute_capability(capability, precision, expected) -> None:
    assert autocast_dtype(precision, capability) is expected


def test_embed_asks_for_the_dtype_of_its_device(monkeypatch) -> None:
    """The CUDA branch of embed consults autocast_dtype with the device's capability (CPU here: None)."""
    from chimera_surv.encoders import base, load_encoder

    seen = []
    monkeypatch.setattr(base, "autocast_dtype", lambda p, c: seen.append((p, c)) or None)
    encoder = load_encoder("test-tiny", None, "cpu", weights="seeded")
    out = encoder.embed(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    assert out.dtype == torch.float32 and seen == []  # the CPU path never autocasts
    assert base.device_capability(torch.device("cpu")) is None


def test_driver_version_is_read_from_proc(tmp_path: Path) -> None:
    proc = tmp_path / "version"
    proc.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
                    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
    assert driver_version(proc) == "535.104.05"
    assert driver_version(tmp_path / "absent") is None


def test_gpu_requested_by_flag_environment_or_a_visible_driver() -> None:
    assert gpu_requested("cuda:0", {}) == "--device cuda:0"
    assert gpu_requested(None, {"CHIMERA_REQUIRE_GPU": "1"}) == "CHIMERA_REQUIRE_GPU=1"
    assert "535.104.05" in gpu_requested(None, {}, driver="535.104.05")
    assert gpu_requested("cpu", {}) is None and gpu_requested(None, {}) is None
    # an explicit CPU is the user's choice, also beside a driver or CHIMERA_REQUIRE_GPU (seen on an H200: a false
    # "finds none usable" line for every `--device cpu` run)
    assert gpu_requested("cpu", {"CHIMERA_REQUIRE_GPU": "1"}, driver="580.159.04") is None


def _lines(caplog, prefix: str) -> list[dict]:
    return [json.loads(r.message.split(" ", 1)[1]) for r in caplog.records if r.message.startswith(prefix + " ")]


def test_a_requested_gpu_that_is_not_usable_is_degraded(caplog) -> None:
    with caplog.at_level(logging.INFO):
        chosen = resolve_device("cuda", environ={}, cuda_available=False, driver="470.82.01")
    assert chosen.type == "cpu"
    (startup,) = _lines(caplog, "DEVICE")
    assert startup["device"] == "cpu" and startup["driver"] == "470.82.01" and startup["torch"] == torch.__version__
    assert set(startup) >= {"gpu", "cuda_build", "capability"}
    (degraded,) = _lines(caplog, "DEGRADED")
    assert degraded["stage"] == "device" and "470.82.01" in degraded["cause"]


def test_no_gpu_expected_means_no_degraded_line(caplog) -> None:
    with caplog.at_level(logging.INFO):
        assert resolve_device(None, environ={}, cuda_available=False, driver="").type == "cpu"
        assert resolve_device("cpu", environ={}, cuda_available=True, driver="").type == "cpu"
        assert resolve_device("cpu", environ={}, cuda_available=True, driver="580.159.04").type == "cpu"
    assert len(_lines(caplog, "DEVICE")) == 3 and not _lines(caplog, "DEGRADED")


def test_compile_is_off_unless_asked_and_only_on_cuda() -> None:
    module = torch.nn.Linear(2, 2)
    assert device_module.maybe_compile(module, torch.device("cpu"), enabled=True) is module
    assert device_module.maybe_compile(module, torch.device("cuda"), enabled=False) is module
