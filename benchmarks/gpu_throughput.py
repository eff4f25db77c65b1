"""Encoder-only and end-to-end patches/s of the extraction pipeline, on the CPU always and on CUDA when present.

Encoders: a ViT-L/16 of UNI's shape (random weights: the cost does not depend on them) and the tiny test encoder.
End to end is `features.extract_case_bag` on a synthetic slide at 0.5 µm/px (224-px patches read at 448 on the
0.25 µm/px level and reduced in the JPEG DCT domain): workers decode with prefetch, batches are pinned on CUDA,
copies are non-blocking and the result of a batch is collected only after the next one is queued. The CUDA run
uses the autocast dtype `device.autocast_dtype` picks (bf16 on Ampere and newer, fp16 before) and optionally
torch.compile (`--compile`). Targets on a GPU: end to end >= 80 % of encoder-only; the UNI shape >= 4,000
patches/s encoder-only on an H100/H200-class GPU in bf16.

The CPU run is deliberately short (a few batches): it checks that the code path works and gives an order of
magnitude, nothing more.

Usage: python benchmarks/gpu_throughput.py [--out benchmarks/results/gpu_throughput.json] [--devices cpu cuda]
       [--workers N] [--slide-px 16384] [--compile] [--merge]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VIPS_CONCURRENCY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch

from chimera_surv.case import SlideInput
from chimera_surv.device import autocast_dtype, device_capability, driver_version, maybe_compile
from chimera_surv.encoders import ENCODERS, load_encoder
from chimera_surv.encoders.base import _freeze
from chimera_surv.features import FeatureRecipe, extract_case_bag

# (encoder, batch, timed encoder-only batches, end-to-end patch cap) per device
PLAN = {"cpu": {"uni": (4, 1, 8), "test-tiny": (64, 10, 640)},
        "cuda": {"uni": (256, 30, None), "test-tiny": (512, 30, None)}}
# the slide is read this many times in one case on CUDA (~850 patches each at 0.5 µm/px on 16k px): ~20k patches
COPIES = {"cpu": 1, "cuda": 24}


def build(name: str, device: torch.device, compile_trunk: bool) -> torch.nn.Module:
    if name == "test-tiny":
        encoder = load_encoder(name, None, device, weights="seeded")
    else:
        encoder = _freeze(ENCODERS.build(name), device)
    encoder.trunk = maybe_compile(encoder.trunk, device, enabled=compile_trunk)
    return encoder


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def encoder_only(encoder: torch.nn.Module, device: torch.device, batch: int, rounds: int, size: int) -> float:
    sample = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    if device.type == "cuda":
        sample = sample.pin_memory()
    for _ in range(1 if device.type == "cpu" else 3):
        encoder.embed(sample)
    sync(device)
    started = time.perf_counter()
    for _ in range(rounds):
        encoder.embed(sample)
    sync(device)
    return rounds * batch / (time.perf_counter() - started)


def end_to_end(encoder: torch.nn.Module, slides: list[SlideInput], batch: int, cap: int | None, workers: int
               ) -> dict[str, float]:
    recipe = FeatureRecipe(encoder=encoder.spec.name, weights="seeded" if encoder.spec.seeded else "file",
                           time_budget_s=None, max_patches=cap, batch_size=batch, num_workers=workers)
    if encoder.mean.device.type == "cuda":  # warm-up: worker start, cuDNN autotune, page cache
        extract_case_bag(slides[:1], recipe, None, encoder=encoder)
    started = time.perf_counter()
    bag, _ = extract_case_bag(slides, recipe, None, encoder=encoder)
    seconds = time.perf_counter() - started
    return {"patches": len(bag), "seconds": seconds, "patches_per_s": len(bag) / seconds}


def run_device(kind: str, slide: SlideInput, workers: int, compile_trunk: bool) -> dict:
    device = torch.device(kind)
    capability = device_capability(device)
    out: dict = {"device": kind, "workers": workers, "compile": compile_trunk and kind == "cuda",
                 "gpu": torch.cuda.get_device_name(device) if kind == "cuda" else None,
                 "capability": capability, "cpu_threads": torch.get_num_threads(), "encoders": {}}
    for name, (batch, rounds, cap) in PLAN[kind].items():
        encoder = build(name, device, compile_trunk)
        size = encoder.spec.input_size or 224
        only = encoder_only(encoder, device, batch, rounds, size)
        slides = [SlideInput(k, slide.wsi, slide.mask) for k in range(COPIES[kind])]
        e2e = end_to_end(encoder, slides, batch, cap, workers)
        dtype = autocast_dtype(encoder.spec.precision, capability)
        out["encoders"][name] = {"batch": batch, "dtype": str(dtype or torch.float32).replace("torch.", ""),
                                 "encoder_only_patches_per_s": round(only, 1),
                                 "end_to_end_patches_per_s": round(e2e["patches_per_s"], 1),
                                 "end_to_end_patches": e2e["patches"],
                                 "end_to_end_over_encoder_only": round(e2e["patches_per_s"] / only, 3)}
        print(name, kind, out["encoders"][name], flush=True)
        del encoder
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_throughput.json")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--slide-px", type=int, default=None, help="square slide side at 0.25 µm/px")
    parser.add_argument("--compile", action="store_true", help="torch.compile the trunk on CUDA (run key cuda+compile)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other devices' runs already in --out (each run records its own machine)")
    args = parser.parse_args()
    from wsi_throughput import synthetic_slide

    cuda = torch.cuda.is_available()
    side = args.slide_px or (16384 if cuda else 4096)
    result: dict = {"host": platform.node(), "python": platform.python_version(), "torch": torch.__version__,
                    "cuda_build": torch.version.cuda, "driver": driver_version(), "slide_px": side, "runs": {}}
    if args.merge and args.out.exists():
        result["runs"] = json.loads(args.out.read_text()).get("runs", {})
    machine = {key: result[key] for key in ("host", "python", "torch", "cuda_build", "driver", "slide_px")}
    with tempfile.TemporaryDirectory() as tmp:
        wsi, mask = synthetic_slide(Path(tmp), side, side)
        slide = SlideInput(0, wsi, mask)
        for kind in args.devices:
            key = kind + ("+compile" if args.compile and kind == "cuda" else "")
            if kind == "cuda" and not cuda:
                result["runs"][key] = "not measured: no CUDA device on this machine"
                continue
            workers = args.workers if kind == "cuda" else 0
            result["runs"][key] = {**machine, **run_device(kind, slide, workers, args.compile)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
