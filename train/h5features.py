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

    python -m train.h5features import CONFIG.yaml FEATURES_DIR [--encoder uni_v1] [--level0-mpp 0.25]
    python -m train.h5features export CONFIG.yaml OUT_DIR [--level0-mpp 0.25]

Files are matched to the cohort's slides by name (`<slide file stem>.h5`, Trident's naming); imported bags go where
`extract` would write them, so `extract` then skips those patients and the later steps use them.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from chimera_surv.encoders import get_spec
from chimera_surv.features import FeatureRecipe

# Trident's encoder names -> ours (only the encoders this project registers)
TRIDENT_ENCODERS = {"uni_v1": "uni", "uni_v2": "uni2-h", "conch_v1": "conch_v1", "virchow2": "virchow2",
                    "hoptimus0": "h-optimus-0", "h0-mini": "h0-mini", "resnet50": "resnet50-trunc"}
SPACING_TOLERANCE = 0.05  # relative


@dataclass
class H5Features:
    """One slide's features as read from an `.h5`: features float32 (N, D), coords int64 (N, 2) level-0 px."""

    features: np.ndarray
    coords: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)
    encoder: str | None = None

    def spacing(self, level0_mpp: float | None = None) -> float | None:
        """µm/px of the patches: ours, Trident's magnification, or CLAM's level downsample x level-0 µm/px."""
        a = self.attrs
        if "target_mpp" in a:
            return float(a["target_mpp"])
        if a.get("target_magnification") not in (None, -1):
            return 10.0 / float(a["target_magnification"])
        if "downsample" in a and level0_mpp is not None:
            return float(np.asarray(a["downsample"]).ravel()[0]) * level0_mpp
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_h5(path: Path | str) -> H5Features:
    """Read a Trident/CLAM/our `.h5`; the encoder from the `encoder` attribute or a `features_<name>` folder."""
    path = Path(path)
    with h5py.File(path, "r") as handle:
        if "features" not in handle or "coords" not in handle:
            raise ValueError(f"{path}: not a patch-feature file (needs datasets 'features' and 'coords')")
        features = np.asarray(handle["features"][()], dtype=np.float32)
        coords = np.asarray(handle["coords"][()])
        attrs = {k: _plain(v) for k, v in handle["coords"].attrs.items()}
        attrs.update({f"features.{k}": _plain(v) for k, v in handle["features"].attrs.items()})
    if features.ndim == 3 and features.shape[0] == 1:  # CLAM's (1, N, D)
        features = features[0]
    if coords.ndim == 3 and coords.shape[0] == 1:
        coords = coords[0]
    if features.ndim != 2 or coords.shape != (features.shape[0], 2):
        raise ValueError(f"{path}: features {features.shape} and coords {coords.shape} do not pair up")
    if not np.isfinite(features).all():
        raise ValueError(f"{path}: non-finite features")
    encoder = attrs.get("features.encoder") or attrs.get("encoder")
    if encoder is None:
        folder = re.match(r"features_(.+)", path.parent.name)
        encoder = folder.group(1) if folder else None
    return H5Features(features, coords.astype(np.int64), attrs, encoder)


def check_recipe(item: H5Features, recipe: FeatureRecipe, source: str, encoder: str | None = None,
                 level0_mpp: float | None = None) -> None:
    """Raise ValueError unless the file's encoder, dimension, spacing and patch size are the recipe's."""
    name = encoder or item.encoder
    if name is None:
        raise ValueError(f"{source}: the encoder is not recorded; name it (e.g. --encoder uni_v1)")
    name = TRIDENT_ENCODERS.get(name, name)
    if name != recipe.encoder:
        raise ValueError(f"{source}: features of encoder '{name}', the recipe uses '{recipe.encoder}'")
    if item.features.shape[1] != get_spec(name).dim:
        raise ValueError(f"{source}: {item.features.shape[1]}-d features, '{name}' gives {get_spec(name).dim}")
    spacing = item.spacing(level0_mpp)
    if spacing is None:
        raise ValueError(f"{source}: the patch spacing is not recorded; give the slides' level-0 µm/px")
    if abs(spacing - recipe.target_mpp) > SPACING_TOLERANCE * recipe.target_mpp:
        raise ValueError(f"{source}: patches at {spacing:g} µm/px, the recipe uses {recipe.target_mpp:g}")
    size = item.attrs.get("patch_size")
    if size is not None and int(size) != recipe.patch_size:
        raise ValueError(f"{source}: {int(size)}-px patches, the recipe uses {recipe.patch_size}")


def import_case(paths: list[Path], recipe: FeatureRecipe, encoder: str | None = None,
                level0_mpp: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One patient's bag from its slides' files (in the given order = slide index): features, coords (N, 3)."""
    features, coords = [], []
    for index, path in enumerate(paths):
        item = read_h5(path)
        check_recipe(item, recipe, str(path), encoder, level0_mpp)
        features.append(item.features)
        coords.append(np.concatenate([np.full((len(item.coords), 1), index, np.int64), item.coords], 1))
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
    from safetensors.numpy import load_file, save_file

    from train.__main__ import Run
    from train.config import load_config
    from train.extract import bag_path

    parser = argparse.ArgumentParser(prog="python -m train.h5features", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("import", "export"))
    parser.add_argument("config", type=Path)
    parser.add_argument("folder", type=Path, help="import: the .h5 files (<slide file stem>.h5); export: destination")
    parser.add_argument("--encoder", default=None, help="the files' encoder when they do not record it")
    parser.add_argument("--level0-mpp", type=float, default=None, help="slides' level-0 µm/px (CLAM; export)")
    args = parser.parse_args(argv)
    run = Run(load_config(args.config))
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
