"""Slide features in half precision against fp32 on CUDA, and the overflow guard, through `extract_case_bag`.

1. Agreement: the bag of one synthetic slide encoded by a ViT-L/16 of UNI's shape (random weights) with autocast
   off (fp32), bf16 and fp16: per patch, the cosine similarity to fp32 and |difference| / |fp32 row|. Random weights
   say nothing about a trained model's activation outliers; this shows the size of the rounding itself.
2. Overflow guard (`encode._finite_rows`): the tiny test encoder with its last layer scaled so that about half
   of the patches' fp16 features pass 65,504, run in fp16. The bag must be finite, with no issue, and match the fp32
   bag; `overflowing_rows_fp16` says how many rows overflowed before the guard re-encoded them.

Needs a GPU (half precision is used only there); without one it writes "not measured".
Usage: python benchmarks/half_precision.py [--out benchmarks/results/half_precision.json] [--slide-px 4096]
       [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np
import torch

import chimera_surv.encoders.base as encoder_base
from chimera_surv.case import SlideInput
from chimera_surv.encoders import ENCODERS, load_encoder
from chimera_surv.encoders.base import _freeze
from chimera_surv.features import FeatureRecipe, extract_case_bag

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def bag_in(dtype: torch.dtype | None, encoder: torch.nn.Module, slides: list[SlideInput], batch: int
           ) -> tuple[np.ndarray, list[str]]:
    """The bag's features with autocast forced to `dtype` (None: fp32), and the extraction's issues."""
    recipe = FeatureRecipe(encoder=encoder.spec.name, weights="seeded" if encoder.spec.seeded else "file",
                           time_budget_s=None, batch_size=batch, num_workers=4)
    original = encoder_base.autocast_dtype
    encoder_base.autocast_dtype = lambda precision, capability: dtype
    try:
        bag, issues = extract_case_bag(slides, recipe, None, encoder=encoder)
    finally:
        encoder_base.autocast_dtype = original
    return bag.features, issues


def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    finite = np.isfinite(other).all(axis=1)
    ref, oth = reference[finite].astype(np.float64), other[finite].astype(np.float64)
    cosine = (ref * oth).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(oth, axis=1))
    relative = np.linalg.norm(ref - oth, axis=1) / np.linalg.norm(ref, axis=1)
    return {"patches": len(reference), "non_finite_rows": int((~finite).sum()),
            "cosine_min": round(float(cosine.min()), 6), "cosine_mean": round(float(cosine.mean()), 6),
            "relative_l2_max": round(float(relative.max()), 6), "relative_l2_mean": round(float(relative.mean()), 6)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "half_precision.json")
    parser.add_argument("--slide-px", type=int, default=4096)
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the code path (no half precision there)")
    args = parser.parse_args()
    result: dict[str, Any] = {"torch": torch.__version__, "device": args.device}
    if args.device == "cuda" and not torch.cuda.is_available():
        result["cuda"] = "not measured: no CUDA device on this machine"
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(result["cuda"])
        return 0
    from wsi_throughput import synthetic_slide

    device = torch.device(args.device)
    result["gpu"] = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    with tempfile.TemporaryDirectory() as tmp:
        wsi, mask = synthetic_slide(Path(tmp), args.slide_px, args.slide_px)
        slides = [SlideInput(0, wsi, mask)]
        uni = _freeze(ENCODERS.build("uni"), device)
        bags = {name: bag_in(dtype, uni, slides, 256) for name, dtype in DTYPES.items()}
        result["uni_shape"] = {name: {**agreement(bags["fp32"][0], bags[name][0]), "issues": bags[name][1]}
                               for name in ("bf16", "fp16")}
        del uni
        tiny = load_encoder("test-tiny", None, device, weights="seeded")
        plain, _ = bag_in(None, tiny, slides, 64)
        scale = 65504.0 / float(np.median(np.abs(plain).max(axis=1)))  # about half the rows pass fp16's maximum
        with torch.no_grad():
            tiny.trunk.head.weight.mul_(scale)
            tiny.trunk.head.bias.mul_(scale)
        reference, _ = bag_in(None, tiny, slides, 64)
        raw = tiny.embed  # count the rows that overflow before the guard sees them
        seen = {"rows": 0}

        def counting(patches: torch.Tensor, full_precision: bool = False) -> torch.Tensor:
            out = raw(patches, full_precision=full_precision)
            if not full_precision:
                seen["rows"] += int((~torch.isfinite(out).all(dim=1)).sum())
            return out

        tiny.embed = counting
        guarded, issues = bag_in(torch.float16, tiny, slides, 64)
        result["overflow_guard"] = {"scale": round(scale, 1), "overflowing_rows_fp16": seen["rows"],
                                    **agreement(reference, guarded), "issues": issues,
                                    "bag_finite": bool(np.isfinite(guarded).all())}
    result["passed"] = (result["overflow_guard"]["bag_finite"] and not result["overflow_guard"]["issues"]
                        and result["overflow_guard"]["overflowing_rows_fp16"] > 0
                        and result["overflow_guard"]["cosine_min"] > 0.999)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
