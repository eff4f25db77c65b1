"""The container on a GPU against the same container on the CPU: one `python inference.py` per case and device.

For each case folder (grand-challenge layout, inputs.json) the script runs `inference.py --device D` as a fresh
process, `--repeats` times on each device, and records the output JSON's bytes and number, the DEVICE startup line,
any DEGRADED lines and the wall time. It reports:
- determinism: whether the repeats on one device wrote the same bytes (the project's rule: same input, same bytes);
- agreement: |number on D - number on the CPU|, absolute and relative to the CPU's number (a GPU encoder runs in
  bf16/fp16 autocast, `chimera_surv.device.autocast_dtype`, so small differences are expected, large ones are not);
- whether each device actually ran (the DEVICE line's `device`), so a silent CPU fallback cannot pass as a GPU run.

Needs bundles (`python -m train.demo --smoke --out M --sample-cases C` makes both). A check, not a unit test: it
needs a GPU to say anything about CUDA, and runs wherever one is present.

Usage: python benchmarks/cuda_inference.py --cases C --model M [--devices cuda cpu] [--repeats 2] [--out F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def log_lines(stderr: str, prefix: str) -> list[dict[str, Any]]:
    """The JSON payloads of `PREFIX {...}` log lines (the container's structured lines), wherever they sit."""
    found = []
    for line in stderr.splitlines():
        _, sep, tail = line.partition(prefix + " {")
        if sep:
            try:
                found.append(json.loads("{" + tail))
            except json.JSONDecodeError:
                found.append({"unparsed": line[-300:]})
    return found


def run_case(case: Path, model: Path, device: str, work: Path) -> dict[str, Any]:
    """One fresh `inference.py` process on one case; its output bytes, number, lines and wall seconds."""
    out = work / "out"
    out.mkdir(parents=True)
    command = [sys.executable, str(ROOT / "inference.py"), "--input", str(case), "--output", str(out),
               "--model", str(model), "--device", device]
    started = time.perf_counter()
    done = subprocess.run(command, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    seconds = time.perf_counter() - started
    files = sorted(out.rglob("*.json"))
    raw = b"".join(f.read_bytes() for f in files)
    try:
        number = float(json.loads(files[0].read_text())) if len(files) == 1 else None
    except (ValueError, TypeError):
        number = None
    startup = log_lines(done.stdout, "DEVICE")
    return {"rc": done.returncode, "seconds": round(seconds, 2), "files": [f.name for f in files],
            "bytes": raw.decode(errors="replace"), "number": number,
            "ran_on": startup[0].get("device") if startup else None,
            "gpu": startup[0].get("gpu") if startup else None,
            "degraded": log_lines(done.stdout, "DEGRADED"), "stderr_tail": done.stdout[-600:] if done.returncode else ""}


def summarise(runs: dict[str, list[dict[str, Any]]], reference: str) -> dict[str, Any]:
    """Determinism per device and agreement of each device's first run with the reference device's."""
    out: dict[str, Any] = {}
    ref = runs.get(reference, [{}])[0].get("number")
    for device, repeats in runs.items():
        numbers = [r["number"] for r in repeats]
        entry: dict[str, Any] = {"same_bytes_over_repeats": len({r["bytes"] for r in repeats}) == 1,
                                 "ran_on": sorted({str(r["ran_on"]) for r in repeats}),
                                 "number": numbers[0], "seconds": [r["seconds"] for r in repeats],
                                 "degraded_stages": sorted({d.get("stage", "?") for r in repeats for d in r["degraded"]})}
        if ref is not None and numbers[0] is not None and device != reference:
            entry["abs_diff_vs_" + reference] = abs(numbers[0] - ref)
            entry["rel_diff_vs_" + reference] = abs(numbers[0] - ref) / max(abs(ref), 1e-12)
        out[device] = entry
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=Path, required=True, help="folder of case folders (each with inputs.json)")
    parser.add_argument("--model", type=Path, required=True, help="model folder (bundles per task)")
    parser.add_argument("--devices", nargs="+", default=["cuda", "cpu"])
    parser.add_argument("--reference", default="cpu", help="the device the others are compared with")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cuda_inference.json")
    args = parser.parse_args()
    import torch

    cases = sorted(p.parent for p in args.cases.glob("*/inputs.json"))
    if not cases:
        print(f"error: {args.cases}: no case folder with an inputs.json", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
                              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                              "devices": args.devices, "repeats": args.repeats, "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            runs = {device: [run_case(case, args.model, device, Path(tmp) / case.name / f"{device}_{k}")
                             for k in range(args.repeats)] for device in args.devices}
            result["cases"][case.name] = {"summary": summarise(runs, args.reference), "runs": runs}
            print(case.name, json.dumps(result["cases"][case.name]["summary"]), flush=True)
    summaries = [c["summary"] for c in result["cases"].values()]
    result["all_deterministic"] = all(s[d]["same_bytes_over_repeats"] for s in summaries for d in s)
    result["all_ran_where_asked"] = all(s[d]["ran_on"] == [d] or s[d]["ran_on"][0].startswith(d)
                                        for s in summaries for d in s)
    diffs = [s[d][k] for s in summaries for d in s for k in s[d] if k.startswith("rel_diff_vs_")]
    result["max_rel_diff_vs_" + args.reference] = max(diffs) if diffs else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"deterministic {result['all_deterministic']}, ran where asked {result['all_ran_where_asked']}, "
          f"max relative difference vs {args.reference} {result['max_rel_diff_vs_' + args.reference]}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
