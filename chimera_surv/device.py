"""Which device the encoder runs on, in which precision, and one startup line that says so.

Why: the platform's T4/A10G hosts run an NVIDIA driver we cannot see in advance; when it is too old for the
image's CUDA build, torch silently finds no GPU and a case runs on 4 CPU cores. The startup line records device,
GPU name, driver, CUDA and torch versions, and a DEGRADED line says when a GPU was requested (flag, environment,
or an NVIDIA driver visible in the container) but none is usable. Precision follows the hardware: bf16 where the
GPU has it natively (Ampere, compute capability >= 8.0), fp16 on older GPUs (T4 is 7.5), fp32 on the CPU.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

REQUIRE_GPU_ENV = "CHIMERA_REQUIRE_GPU"  # "1": a missing GPU is logged as DEGRADED
COMPILE_ENV = "CHIMERA_COMPILE"  # "1": torch.compile the encoder trunk on CUDA
DRIVER_FILE = Path("/proc/driver/nvidia/version")


def autocast_dtype(precision: str, capability: tuple[int, int] | None) -> torch.dtype | None:
    """The autocast dtype for an encoder whose entry asks for `precision` ("fp32" | "fp16" | "bf16").

    None means fp32 (the CPU, `capability` None, or an fp32 entry). A half-precision entry gets bf16 on compute
    capability >= 8.0 (native bf16, fp32's range) and fp16 below (a T4 has no bf16 units).
    """
    if capability is None or precision == "fp32":
        return None
    return torch.bfloat16 if tuple(capability) >= (8, 0) else torch.float16


def device_capability(device: torch.device) -> tuple[int, int] | None:
    """Compute capability of a CUDA device, None for anything else."""
    if device.type != "cuda":
        return None
    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def driver_version(path: Path = DRIVER_FILE) -> str | None:
    """The kernel driver version from /proc (present when the host's driver is mounted into the container)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for word in text.split():
        parts = word.split(".")
        if len(parts) >= 2 and all(p.isdigit() for p in parts):
            return word
    return None


def gpu_requested(flag: str | None, environ: dict[str, str] | None = None, driver: str | None = None) -> str | None:
    """Why a GPU is expected (a reason string), or None: `--device cuda`, CHIMERA_REQUIRE_GPU=1, or a driver."""
    environ = dict(os.environ) if environ is None else environ
    if flag and flag.startswith("cuda"):
        return f"--device {flag}"
    if flag:  # an explicit other device (`--device cpu`): the user chose it, whatever the machine has
        return None
    if environ.get(REQUIRE_GPU_ENV, "") == "1":
        return f"{REQUIRE_GPU_ENV}=1"
    if driver:
        return f"NVIDIA driver {driver} visible in the container"
    return None


def describe(device: torch.device, driver: str | None) -> dict[str, Any]:
    """The fields of the startup line."""
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "cuda_build": torch.version.cuda,
                            "driver": driver, "gpu": None, "capability": None, "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        info["arch_list"] = torch.cuda.get_arch_list()  # the kernels this torch build carries (sm_75 = T4)
    return info


def resolve_device(flag: str | None = None, environ: dict[str, str] | None = None,
                   cuda_available: bool | None = None, driver: str | None = None) -> torch.device:
    """Pick the device, log one `DEVICE {...}` line, and a DEGRADED line when a requested GPU is not usable."""
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    driver = (driver_version() if driver is None else driver) or None  # "" (tests): no driver
    reason = gpu_requested(flag, environ, driver)
    if flag and not (flag.startswith("cuda") and not available):
        device = torch.device(flag)
    else:
        device = torch.device("cuda" if available else "cpu")
    log.info("DEVICE %s", json.dumps(describe(device, driver), sort_keys=True))
    if reason and device.type != "cuda":  # a reason means no explicit non-CUDA flag: so torch found no GPU
        log.warning("DEGRADED %s", json.dumps({
            "stage": "device", "action": "running on the CPU (slower: the slide deadline cuts the bag sooner)",
            "cause": f"a GPU was expected ({reason}) but torch {torch.__version__} (CUDA {torch.version.cuda}) "
                     f"finds none usable; driver {driver or 'not visible'}"}, sort_keys=True))
    return device


def maybe_compile(module: torch.nn.Module, device: torch.device, enabled: bool | None = None) -> torch.nn.Module:
    """torch.compile on CUDA when asked (CHIMERA_COMPILE=1): worth it for long runs, costs minutes of start-up."""
    enabled = os.environ.get(COMPILE_ENV, "") == "1" if enabled is None else enabled
    if not enabled or device.type != "cuda":
        return module
    return torch.compile(module, dynamic=False)
