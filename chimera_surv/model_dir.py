"""Is a model folder fit to upload? `python -m chimera_surv.model_dir MODEL_DIR [--force]` (run by do_save.sh).

Why: the platform runs whatever the model tarball holds. A demo bundle (trained on synthetic patients with the
seeded `test-tiny` encoder) or a bundle whose slide / MRI encoder has no weight file under `encoders/<name>/`
still predicts, silently degraded, so the mistake only shows as a poor leaderboard score. This check refuses
both before packing, one line per bundle naming it and the cause; `--force` packs anyway with the same lines as
warnings. Only file presence is checked here (fast); `python -m chimera_surv.encoders` loads the weights strictly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from chimera_surv.cli import Parser, UserError, one_line, require_path, run_cli

BUNDLE_JSON = "bundle.json"


def bundle_dirs(model_dir: Path) -> list[Path]:
    """The bundle folders directly under the model folder (each holding a bundle.json), sorted."""
    return sorted(p.parent for p in Path(model_dir).glob(f"*/{BUNDLE_JSON}"))


def bundle_encoders(doc: dict[str, Any]) -> list[str]:
    """The encoders a bundle needs at inference: the slide recipe's encoder (with `wsi`) and an MRI encoder (with
    `mri`, unless the MRI features are the weight-free measurements)."""
    modalities = doc.get("modalities") or []
    names = []
    recipe = doc.get("recipe")
    if "wsi" in modalities and isinstance(recipe, dict) and recipe.get("encoder"):
        names.append(str(recipe["encoder"]))
    if "mri" in modalities and doc.get("mri_kind") not in (None, "measurements"):
        names.append(str(doc["mri_kind"]))
    return names


def needed_encoders(model_dir: Path) -> list[str]:
    """Every encoder some readable bundle of the folder needs, sorted."""
    names: set[str] = set()
    for folder in bundle_dirs(model_dir):
        try:
            names.update(bundle_encoders(json.loads((folder / BUNDLE_JSON).read_text())))
        except (OSError, ValueError):
            continue
    return sorted(names)


def pack_problems(model_dir: Path) -> list[str]:
    """One line per problem that should stop an upload: no bundle, an unreadable bundle.json, a demo bundle, an
    encoder without weights."""
    model_dir = Path(model_dir)
    folders = bundle_dirs(model_dir)
    if not folders:
        return [f"{model_dir}: no bundle (no */{BUNDLE_JSON}); train one first (python -m train CONFIG)"]
    try:  # torch: seconds, so after the cheap check
        from chimera_surv.encoders import get_spec
        from chimera_surv.encoders.base import find_weight_file
    except ImportError as exc:
        raise UserError(f"checking the bundles needs the project's packages ({one_line(exc)}): run `make setup`, "
                        "or set PYTHON to the environment's python") from exc

    problems = []
    for folder in folders:
        file = folder / BUNDLE_JSON
        try:
            doc = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            problems.append(f"{file}: unreadable ({one_line(exc)})")
            continue
        if not isinstance(doc, dict):
            problems.append(f"{file}: not a bundle (a JSON {type(doc).__name__}, an object expected)")
            continue
        for name in bundle_encoders(doc):
            try:
                spec = get_spec(name)
            except KeyError:
                problems.append(f"{file}: needs encoder {name!r}, which this code does not know")
                continue
            if spec.seeded:
                problems.append(f"{file}: a demo bundle (encoder {name!r}, the seeded test encoder); train it on "
                                "the real cohort")
            elif find_weight_file(name, model_dir / "encoders") is None:
                expected = " or ".join(str(model_dir / "encoders" / name / f) for f in spec.weight_files)
                problems.append(f"{file}: needs encoder {name!r}, whose weights are missing ({expected})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m chimera_surv.model_dir", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="the model folder (bundles + encoders/)")
    parser.add_argument("--force", action="store_true", help="report the problems as warnings and exit 0")
    args = parser.parse_args(argv)

    def body() -> int:
        require_path(args.model, "MODEL_DIR", "dir")
        problems = pack_problems(args.model)
        for line in problems:
            print(f"warning: {line} (packed anyway: --force)" if args.force else
                  f"error: {line}; refused (--force packs anyway)", file=sys.stderr)
        return 2 if problems and not args.force else 0

    return run_cli(body, user_errors=(UserError,))


if __name__ == "__main__":
    sys.exit(main())
