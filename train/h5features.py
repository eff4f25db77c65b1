"""Patch features in and out as `.h5` in the Trident / CLAM convention, so existing extractions become training bags.

Why: participants already hold Trident or CLAM patch features for thousands of slides; extracting them again costs
GPU-days. The convention (Trident `WSI.extract_patch_features` and `extract_tissue_coords`, CLAM
`extract_features_fp.py`):

- dataset `features` float (N, D) (CLAM sometimes (1, N, D)); dataset `coords` int (N, 2) = level-0 x, y of each
  patch's top-left corner;
- Trident `coords` attributes: `patch_size` (px at the target magnification), `patch_size_level0`,
  `level0_magnification`, `target_magnification`, `overlap`, `name`, `savetodir`; magnification m means
  10 / m µm/px (20x = 0.5 µm/px), as Trident converts it; the encoder is named by the folder `features_<encoder>`;
- CLAM `coords` attributes (when present): `patch_size`, `patch_level`, `downsample`; the spacing then needs the
  slide's level-0 µm/px.

slide2vec 2.x writes `.pt`/`.npz` tile embeddings with a `.meta.json` (not `.h5`); it is not read here.

On import the encoder (file attribute `encoder`, else the folder name, else the caller) and the spacing and patch
size must match the training recipe, or the import fails: features of another encoder or scale would silently
train a model that inference cannot feed. Export writes the same convention plus explicit `encoder`,
`target_mpp` and `level0_mpp` attributes, so a round trip needs no outside knowledge.

    python -m train.h5features import CONFIG.yaml FEATURES_DIR [--encoder uni_v1] [--level0-mpp 0.25] [--work DIR]
    python -m train.h5features export CONFIG.yaml OUT_DIR [--level0-mpp 0.25] [--work DIR]

Files are matched to the cohort's slides by name (`<slide file stem>.h5`, Trident's naming); imported bags go where
`extract` would write them, so `extract` then skips those patients and the later steps use them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from chimera_surv.cli import Parser, UserError, require_path, run_cli

if TYPE_CHECKING:  # torch comes with it: imported where used, so a mistyped path fails in well under a second
    from chimera_surv.features import FeatureRecipe

# The reader and the recipe check are the container's (inference takes `.h5` in place of slides too).
from chimera_surv.readers.precomputed import (  # noqa: F401 - re-exported for training callers
    SPACING_TOLERANCE,
    TRIDENT_ENCODERS,
    H5Features,
    RecipeMismatch,
    check_recipe,
    read_h5,
)


def import_case(paths: list[Path], recipe: FeatureRecipe, encoder: str | None = None,
                level0_mpp: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One patient's bag from its slides' files (in the given order = slide index): features, coords (N, 3)."""
    features, coords = [], []
    for index, path in enumerate(paths):
        item = read_h5(path)
        check_recipe(item, recipe, str(path), encoder, level0_mpp)
        features.append(item.features)
        coords.append(np.concatenate([np.full((len(item.coords), 1), index, np.int64), item.coords], 1))
    from chimera_surv.encoders import get_spec

    dim = get_spec(recipe.encoder).dim
    return (np.concatenate(features) if features else np.zeros((0, dim), np.float32),
            np.concatenate(coords) if coords else np.zeros((0, 3), np.int64))


def write_h5(path: Path, features: np.ndarray, coords_xy: np.ndarray, recipe: FeatureRecipe, level0_mpp: float,
             name: str) -> Path:
    """One slide's features in the Trident convention (plus `encoder`, `target_mpp`, `level0_mpp`), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with h5py.File(tmp, "w") as handle:
        data = handle.create_dataset("features", data=np.asarray(features, np.float32))
        data.attrs.update({"name": name, "savetodir": str(path.parent), "encoder": recipe.encoder})
        xy = handle.create_dataset("coords", data=np.asarray(coords_xy, np.int64).reshape(-1, 2))
        xy.attrs.update({
            "patch_size": recipe.patch_size,
            "patch_size_level0": round(recipe.patch_size * recipe.target_mpp / level0_mpp),
            "level0_magnification": 10.0 / level0_mpp, "target_magnification": 10.0 / recipe.target_mpp,
            "overlap": 0, "name": name, "savetodir": str(path.parent), "encoder": recipe.encoder,
            "target_mpp": recipe.target_mpp, "level0_mpp": level0_mpp})
    tmp.replace(path)
    return path


def export_bag(features: np.ndarray, coords: np.ndarray, recipe: FeatureRecipe, out_dir: Path, names: list[str],
               level0_mpp: float = 0.25) -> list[Path]:
    """A project bag (coords = slide index, x, y) as one `<out>/<names[slide]>.h5` per slide (Trident names files
    by the slide's file stem)."""
    paths = []
    for slide in np.unique(coords[:, 0]).tolist():
        rows = coords[:, 0] == slide
        name = names[slide]
        paths.append(write_h5(out_dir / f"{name}.h5", features[rows], coords[rows, 1:], recipe, level0_mpp, name))
    return paths


def slide_stem(path: Path | None) -> str:
    """The name Trident gives a slide's feature file: the WSI file name without its extension(s)."""
    return Path(path).name.split(".")[0] if path is not None else ""


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m train.h5features", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("import", "export"))
    parser.add_argument("config", type=Path)
    parser.add_argument("folder", type=Path, help="import: the .h5 files (<slide file stem>.h5); export: destination")
    parser.add_argument("--encoder", default=None, help="the files' encoder when they do not record it")
    parser.add_argument("--level0-mpp", type=float, default=None, help="slides' level-0 µm/px (CLAM; export)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (overrides `work_dir`, as in `train`)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error")
    args = parser.parse_args(argv)
    if args.level0_mpp is not None and not args.level0_mpp > 0:
        parser.error(f"argument --level0-mpp: {args.level0_mpp} is not a positive µm/px")
    from train.config import ConfigError

    return run_cli(lambda: _run(args), user_errors=(UserError, ConfigError, FileNotFoundError, NotADirectoryError,
                                                    PermissionError, ValueError), debug=args.debug)


def _run(args: argparse.Namespace) -> int:
    require_path(args.config, "CONFIG", "file")  # cheap checks first: the imports below take seconds (torch)
    if args.action == "import":
        require_path(args.folder, "FEATURES_DIR", "dir")
    from safetensors.numpy import load_file, save_file

    from chimera_surv.features import FeatureRecipe
    from train.__main__ import Run
    from train.config import load_config
    from train.extract import bag_path

    overrides = {"work_dir": str(args.work.resolve())} if args.work else {}
    run = Run(load_config(args.config, overrides))
    recipe = FeatureRecipe.from_dict(run.config["recipe"])
    for patient in run.patients:
        names = [slide_stem(s.wsi) for s in patient.slides]
        target = bag_path(run.work, patient.case_id)
        if args.action == "export":
            if target.is_file():
                data = load_file(str(target))
                export_bag(data["features"], data["coords"], recipe, args.folder, names, args.level0_mpp or 0.25)
            continue
        paths = [args.folder / f"{name}.h5" for name in names]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            print(f"{patient.case_id}: no features for {missing}; left for `extract`")
            continue
        features, coords = import_case(paths, recipe, args.encoder, args.level0_mpp)
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file({"features": features, "coords": coords}, str(target))
        print(f"{patient.case_id}: {len(features)} patches from {len(paths)} file(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
