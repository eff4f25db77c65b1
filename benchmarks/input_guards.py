"""Time and peak memory of the input guards of chimera_surv/limits.py on inputs that used to hang or exhaust memory.

Writes benchmarks/results/input_guards.json. Run: ``.venv/bin/python benchmarks/input_guards.py [--side 30000]``.
Each measurement runs in a fresh process, so its peak RSS is its own:
- the tissue estimate (no mask) on a one-level `side` x `side` JPEG slide (issue 11: 127 s and 11 GB at 30k before);
- reading a 1 Gpx single-page deflate mask (MAX_MASK_DECODE_PIXELS, the largest one still decoded);
- refusing a 300-byte mask TIFF that declares 153,600 x 204,800 px (it hung past 5 minutes before);
- refusing an .mha whose header declares 1000³ voxels (4.6 GB before).
Targets: the estimate within ESTIMATE_TIME_S and 1 GB; the refusals within 2 s and 300 MB.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))


def make_inputs(folder: Path, side: int) -> dict[str, Path]:
    import numpy as np
    import pyvips
    from test_input_faults import mha_declaring, tiny_tiff_declaring

    rng = np.random.default_rng(0)
    cells = rng.integers(0, 2, size=(side // 400 + 1, side // 400 + 1), dtype=np.uint8)
    tissue = pyvips.Image.new_from_array(cells).zoom(400, 400).crop(0, 0, side, side)
    pink, white = [200, 110, 170], [245, 245, 245]
    rgb = tissue.ifthenelse(pink, white).cast("uchar").copy(interpretation="srgb")
    slide = folder / "one_level.tif"
    rgb.tiffsave(str(slide), tile=True, tile_width=256, tile_height=256, compression="jpeg", Q=80, bigtiff=True,
                 xres=4000.0, yres=4000.0, resunit="cm")
    mask = folder / "mask_1gpx.tif"
    mask_cells = rng.integers(0, 2, size=(25_000 // 500 + 1, 40_000 // 500 + 1), dtype=np.uint8)
    big = pyvips.Image.new_from_array(mask_cells).zoom(500, 500).crop(0, 0, 40_000, 25_000)
    big.cast("uchar").tiffsave(str(mask), tile=True, tile_width=256, tile_height=256, compression="deflate",
                               bigtiff=True)
    return {"slide": slide, "mask": mask,
            "declared_mask": tiny_tiff_declaring(folder / "declared_mask.tif", 153_600, 204_800),
            "declared_mri": mha_declaring(folder / "declared.mha", (1000, 1000, 1000))}


def measure(kind: str, path: str) -> dict:
    """One measurement in this process: seconds, peak RSS and the outcome."""
    from chimera_surv import limits
    from chimera_surv.readers import slide as reader
    from chimera_surv.readers.mri import MissingModality, read_volume

    start = time.perf_counter()
    try:
        if kind == "estimate":
            with reader.open_slide(path) as wsi:
                mask = reader.estimate_tissue_mask(wsi)
            outcome = f"tissue map {mask.tissue.shape}, fraction {mask.fraction:.3f}"
        elif kind == "mask":
            outcome = f"mask read at {reader._read_mask_pixels(Path(path), limits.MAX_MASK_PIXELS).shape}"
        else:
            if kind == "declared_mask":
                reader._read_mask_pixels(Path(path), limits.MAX_MASK_PIXELS)
            else:
                read_volume(path)
            outcome = "decoded (the guard did not fire)"
    except (reader.SlideError, MissingModality) as error:
        outcome = f"refused: {error}"
    return {"seconds": round(time.perf_counter() - start, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "outcome": outcome}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=16_000, help="side of the one-level slide (px)")
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    from chimera_surv import limits

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        inputs = make_inputs(Path(tmp), args.side)
        print(f"inputs written in {time.perf_counter() - start:.0f} s", flush=True)
        for kind, key in (("estimate", "slide"), ("mask", "mask"), ("declared_mask", "declared_mask"),
                          ("declared_mri", "declared_mri")):
            run = subprocess.run([sys.executable, __file__, "--measure", kind, str(inputs[key])], check=True,
                                 capture_output=True, text=True, cwd=ROOT)
            results[kind] = {"file_mb": round(inputs[key].stat().st_size / 1e6, 3),
                             **json.loads(run.stdout.strip().splitlines()[-1])}
            print(kind, results[kind], flush=True)
    results["estimate"]["slide"] = f"{args.side} x {args.side} px, one level, JPEG tiles 256"
    results["mask"]["mask"] = "40,000 x 25,000 px, one page, deflate tiles 256"
    doc = {"machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count(),
                       "load_average_1min": round(__import__("os").getloadavg()[0], 1)},
           "limits": {k: getattr(limits, k) for k in dir(limits) if k.isupper()},
           "targets": {"estimate_seconds": limits.ESTIMATE_TIME_S, "estimate_peak_rss_mb": 1024,
                       "refusal_seconds": 2, "refusal_peak_rss_mb": 300},
           "results": results}
    out = ROOT / "benchmarks" / "results" / "input_guards.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
