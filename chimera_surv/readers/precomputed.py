"""Precomputed features read and checked against a bundle's recipe: slide patch features (`.h5`, Trident / CLAM
convention) and MRI feature vectors (`.json`, `.h5`, `.npy` + a `.json` sidecar).

Why here and not in train/: inference (`inference.py`, `predict_cohort`) accepts such a file in place of a slide,
and training imports them (train/h5features.py); both must read and check them the same way. Datasets `features`
(N, D) (CLAM: (1, N, D)) and `coords` (N, 2) level-0 x, y; the spacing from our `target_mpp` attribute, Trident's
`target_magnification` (10 / m µm/px) or CLAM's `downsample` x the level-0 µm/px. A file whose encoder, width,
spacing, patch size or overlap differs from the recipe raises `RecipeMismatch` naming the field: features of
another encoder or scale would otherwise be scored silently by a model that never saw them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Trident's encoder names -> ours (only the encoders this project registers)
TRIDENT_ENCODERS = {"uni_v1": "uni", "uni_v2": "uni2-h", "conch_v1": "conch_v1", "virchow2": "virchow2",
                    "hoptimus0": "h-optimus-0", "h0-mini": "h0-mini", "resnet50": "resnet50-trunc"}
SPACING_TOLERANCE = 0.05  # relative


class RecipeMismatch(ValueError):
    """A feature file made with another recipe; `field` names the recipe field (encoder, dim, target_mpp, ...)."""

    def __init__(self, source: str, field_name: str, message: str) -> None:
        super().__init__(f"{source}: {field_name}: {message}")
        self.field = field_name


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
    """Read a Trident/CLAM/our `.h5`; the encoder from the `encoder` attribute or a `features_<name>` folder.

    Declared shapes and dtypes are checked BEFORE any data is read (a few-KB file can declare 100 M x 64 floats:
    refused against chimera_surv/limits.py, not read); every failure is a ValueError naming the file.
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            if "features" not in handle or "coords" not in handle:
                raise ValueError("not a patch-feature file (needs datasets 'features' and 'coords')")
            for name in ("features", "coords"):
                _check_declared(handle[name], name, h5py)
            features = np.asarray(handle["features"][()], dtype=np.float32)
            coords = np.asarray(handle["coords"][()])
            attrs = {k: _plain(v) for k, v in handle["coords"].attrs.items()}
            attrs.update({f"features.{k}": _plain(v) for k, v in handle["features"].attrs.items()})
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    except Exception as err:  # noqa: BLE001 - h5py's OSError/KeyError/TypeError messages do not name the file
        raise ValueError(f"{path}: unreadable .h5 ({_size(path)}): {type(err).__name__}: {err}") from None
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


def _check_declared(dataset: Any, name: str, h5py: Any) -> None:
    """Refuse a dataset whose declared shape or dtype cannot be a bag, before reading a byte of it."""
    from chimera_surv.limits import MAX_H5_FEATURE_DIM, MAX_H5_VALUES

    if not isinstance(dataset, h5py.Dataset):
        raise TypeError(f"'{name}' is a {type(dataset).__name__}, not a dataset")
    if dataset.dtype.kind not in ("f", "i", "u"):
        raise ValueError(f"dataset '{name}' has dtype {dataset.dtype}, numbers expected")
    shape = tuple(int(n) for n in (dataset.shape or ()))
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[0] != 1):
        raise ValueError(f"dataset '{name}' declares shape {shape}, (N, D) or (1, N, D) expected")
    values = int(np.prod(shape, dtype=np.float64))
    if values > MAX_H5_VALUES or shape[-1] > MAX_H5_FEATURE_DIM:
        raise ValueError(f"dataset '{name}' declares shape {shape} ({values:,} values), over the limit of "
                         f"{MAX_H5_VALUES:,} values and {MAX_H5_FEATURE_DIM:,} per patch (chimera_surv/limits.py)")


def _size(path: Path) -> str:
    try:
        return f"{path.stat().st_size} bytes"
    except OSError:
        return "size unknown"


def check_recipe(item: H5Features, recipe: Any, source: str, encoder: str | None = None,
                 level0_mpp: float | None = None) -> None:
    """Raise RecipeMismatch unless the file's encoder, width, spacing, patch size and overlap are the recipe's."""
    from chimera_surv.encoders import get_spec

    name = encoder or item.encoder
    if name is None:
        raise RecipeMismatch(source, "encoder", "the encoder is not recorded; name it (e.g. --encoder uni_v1)")
    name = TRIDENT_ENCODERS.get(name, name)
    if name != recipe.encoder:
        raise RecipeMismatch(source, "encoder", f"features of encoder '{name}', the recipe uses '{recipe.encoder}'")
    if item.features.shape[1] != get_spec(name).dim:
        raise RecipeMismatch(source, "dim", f"{item.features.shape[1]}-d features, '{name}' gives "
                                            f"{get_spec(name).dim}")
    spacing = item.spacing(level0_mpp)
    if spacing is None:
        raise RecipeMismatch(source, "target_mpp", "the patch spacing is not recorded; give the slides' level-0 µm/px")
    if abs(spacing - recipe.target_mpp) > SPACING_TOLERANCE * recipe.target_mpp:
        raise RecipeMismatch(source, "target_mpp", f"patches at {spacing:g} µm/px, the recipe uses "
                                                   f"{recipe.target_mpp:g}")
    size = item.attrs.get("patch_size")
    if size is not None and int(size) != recipe.patch_size:
        raise RecipeMismatch(source, "patch_size", f"{int(size)}-px patches, the recipe uses {recipe.patch_size}")
    overlap = item.attrs.get("overlap")
    if overlap not in (None, 0, 0.0):  # our grid is non-overlapping: stride = patch size
        raise RecipeMismatch(source, "stride", f"patches overlap by {overlap} px, the recipe's stride is the patch "
                                               f"size ({recipe.patch_size} px, no overlap)")


def precomputed_parts(slides: list[Any], recipe: Any, report: Any) -> tuple[list[tuple[int, np.ndarray, np.ndarray]],
                                                                            list[Any]]:
    """Split a case's slides: those with a `.h5` (`SlideInput.features`) become (slide index, features, coords
    (N, 3)) once the file passes the recipe check; those without are returned for extraction. A file that cannot
    be read or fails the check is reported (`report(cause, action)`) and its slide left out: the slide is never
    decoded in its place, so the case is scored on the files the user gave or without them, never on a mix."""
    from chimera_surv.errors import describe

    parts, to_decode = [], []
    for slide in slides:
        path = getattr(slide, "features", None)
        if path is None:
            to_decode.append(slide)
            continue
        try:
            item = read_h5(path)
            check_recipe(item, recipe, Path(path).name)
        except Exception as exc:  # noqa: BLE001 - one bad file costs its slide only
            cause = str(exc) if isinstance(exc, RecipeMismatch) else f"{Path(path).name}: {describe(exc)}"
            report(cause, f"slide {slide.index} left out (its image is not decoded instead)")
            continue
        index = np.full((len(item.coords), 1), slide.index, np.int64)
        parts.append((slide.index, item.features, np.concatenate([index, item.coords], 1)))
    return parts, to_decode


def merge_parts(parts: list[tuple[int, np.ndarray, np.ndarray]], extracted: Any) -> Any:
    """One Bag from the precomputed slides' parts and the extracted bag of the others (or None), in slide order."""
    from chimera_surv.features import Bag

    if extracted is not None:
        if not parts:
            return extracted
        rows = extracted.coords[:, 0]
        parts = parts + [(int(i), extracted.features[rows == i], extracted.coords[rows == i]) for i in np.unique(rows)]
    if not parts:
        return Bag(np.zeros((0, 0), np.float32), np.zeros((0, 3), np.int64))
    parts = sorted(parts, key=lambda part: part[0])
    return Bag(np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]),
               getattr(extracted, "meta", None) or {})


MRI_SUFFIXES = (".json", ".h5", ".npy")


def read_mri_vector(path: Path | str, kind: str | None, names: list[str] | None) -> np.ndarray:
    """A precomputed MRI feature vector, checked against the bundle: `kind` (its `mri_kind`: measurements or an
    MRI encoder) and, when the bundle recorded them, the feature `names` in order. Formats: JSON
    `{"kind", "names", "values"}` (what training's extract step writes per patient); `.h5` with a dataset
    `features` (D,) or (1, D) and attributes `kind`, `names`; `.npy` (D,) with those keys in `<stem>.json`.
    A file that does not say its kind is refused: a vector of another extractor would be scored silently."""
    path = Path(path)
    source = path.name
    meta: dict[str, Any] = {}
    if path.suffix == ".json":
        meta = json.loads(path.read_text())
        if not isinstance(meta, dict) or "values" not in meta:
            raise ValueError(f"{source}: a JSON MRI vector needs 'values' (and 'kind', 'names')")
        values = np.asarray([np.nan if v is None else v for v in meta["values"]], dtype=np.float64)
    elif path.suffix == ".h5":
        import h5py

        with h5py.File(path, "r") as handle:
            if "features" not in handle:
                raise ValueError(f"{source}: no dataset 'features'")
            _check_vector_size(source, getattr(handle["features"], "size", None))  # declared, before reading
            values = np.asarray(handle["features"][()], dtype=np.float64)
            meta = {k: _plain(v) for k, v in {**handle.attrs, **handle["features"].attrs}.items()}
    elif path.suffix == ".npy":
        declared = np.load(path, allow_pickle=False, mmap_mode="r")  # the header only, until read below
        _check_vector_size(source, declared.size)
        values = np.asarray(declared, dtype=np.float64)
        sidecar = path.with_suffix(".json")
        meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    else:
        raise ValueError(f"{source}: an MRI vector is one of {MRI_SUFFIXES}")
    values = values.reshape(-1) if values.ndim == 2 and values.shape[0] == 1 else values
    if values.ndim != 1:
        raise RecipeMismatch(source, "dim", f"a vector is 1-d, got shape {values.shape}")
    file_names = meta.get("names")
    if isinstance(file_names, str):
        file_names = json.loads(file_names) if file_names.startswith("[") else file_names.split(",")
    if meta.get("kind") is None:
        raise RecipeMismatch(source, "mri_kind", f"the extractor is not recorded; the bundle uses '{kind}' "
                                                 "(add 'kind' to the file or its .json sidecar)")
    if str(meta["kind"]) != str(kind):
        raise RecipeMismatch(source, "mri_kind", f"features of '{meta['kind']}', the bundle uses '{kind}'")
    if names is not None and len(values) != len(names):
        raise RecipeMismatch(source, "dim", f"{len(values)} values, the bundle expects {len(names)}")
    if names is not None and file_names is not None and list(map(str, file_names)) != list(names):
        wrong = next(i for i, (a, b) in enumerate(zip(map(str, file_names), names)) if a != b) \
            if len(file_names) == len(names) else None
        detail = f"'{file_names[wrong]}' where the bundle has '{names[wrong]}'" if wrong is not None else \
            f"{len(file_names)} names for {len(names)}"
        raise RecipeMismatch(source, "names", f"feature names differ: {detail}")
    return values.astype(np.float32)


def _check_vector_size(source: str, size: int | None) -> None:
    """A vector file declaring more values than any feature vector holds is refused before it is read."""
    from chimera_surv.limits import MAX_H5_FEATURE_DIM

    if size is None or size > MAX_H5_FEATURE_DIM:
        raise ValueError(f"{source}: declares {size} values, over the {MAX_H5_FEATURE_DIM:,} of a feature vector "
                         f"(chimera_surv/limits.py)")


def bundle_mri_vector(path: Path | str, bundle: Any) -> np.ndarray:
    """read_mri_vector against a loaded bundle: its `mri_kind` and the MRI feature names its members were fitted on."""
    names = None
    for member in getattr(bundle, "members", []):
        fitted = getattr(member, "preprocessors", {}).get("mri")
        if fitted is not None and getattr(fitted, "names", None):
            names = list(fitted.names)
            break
    return read_mri_vector(path, bundle.mri_kind, names)


# ------------------------------------------------------------------------------------------------ slide embeddings
SLIDE_EMBEDDING = "slide_embedding"  # the modality: one vector per slide from a slide encoder (TITAN, PRISM, ...)
EMBEDDING_SUFFIXES = (".h5", ".npy", ".json")


def read_slide_embedding(path: Path | str) -> tuple[np.ndarray, str | None]:
    """(vector float32 (D,), encoder name or None) of one slide. `.h5`: dataset `features` (D,) or (1, D), the
    encoder from an `encoder` attribute or Trident's `slide_features_<encoder>` folder; `.npy` (D,) with
    `{"encoder"}` in `<stem>.json`; `.json` `{"encoder", "values"}`."""
    path = Path(path)
    meta: dict[str, Any] = {}
    if path.suffix == ".h5":
        import h5py

        with h5py.File(path, "r") as handle:
            if "features" not in handle:
                raise ValueError(f"{path.name}: no dataset 'features'")
            _check_vector_size(path.name, getattr(handle["features"], "size", None))  # declared, before reading
            values = np.asarray(handle["features"][()], dtype=np.float64)
            meta = {k: _plain(v) for k, v in {**handle.attrs, **handle["features"].attrs}.items()}
    elif path.suffix == ".npy":
        declared = np.load(path, allow_pickle=False, mmap_mode="r")  # the header only, until read below
        _check_vector_size(path.name, declared.size)
        values = np.asarray(declared, dtype=np.float64)
        sidecar = path.with_suffix(".json")
        meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    elif path.suffix == ".json":
        meta = json.loads(path.read_text())
        values = np.asarray(meta.get("values", []), dtype=np.float64)
    else:
        raise ValueError(f"{path.name}: a slide embedding is one of {EMBEDDING_SUFFIXES}")
    values = values.reshape(-1) if values.ndim == 2 and values.shape[0] == 1 else values
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{path.name}: a slide embedding is one vector, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{path.name}: non-finite values")
    encoder = meta.get("encoder")
    if encoder is None:
        folder = re.match(r"slide_features_(.+)", path.parent.name)
        encoder = folder.group(1) if folder else None
    return values.astype(np.float32), (str(encoder) if encoder is not None else None)


def embedding_names(encoder: str, dim: int) -> list[str]:
    """The feature names a bundle records for a slide-embedding modality: they carry its recipe (encoder, width)."""
    return [f"{encoder}:{i}" for i in range(dim)]


def patient_slide_embedding(paths: list[Path], names: list[str] | None = None,
                            encoder: str | None = None) -> tuple[np.ndarray, str]:
    """The mean over a patient's slides of their embeddings, checked: one encoder for all files (`encoder` names
    it for files that do not record it) and, given the bundle's `names`, that encoder and width."""
    vectors, found = [], set()
    for path in paths:
        vector, name = read_slide_embedding(path)
        name = name or encoder
        if name is None:
            raise RecipeMismatch(Path(path).name, "encoder", "the slide encoder is not recorded (an 'encoder' "
                                                             "attribute, a .json sidecar or a slide_features_<name> folder)")
        if names is not None:
            want = names[0].rsplit(":", 1)[0]
            if name != want:
                raise RecipeMismatch(Path(path).name, "encoder", f"embedding of '{name}', the bundle uses '{want}'")
            if len(vector) != len(names):
                raise RecipeMismatch(Path(path).name, "dim", f"{len(vector)} values, the bundle expects {len(names)}")
        found.add(name)
        vectors.append(vector)
    if not vectors:
        raise ValueError("no slide embedding file")
    if len(found) > 1 or len({len(v) for v in vectors}) > 1:
        raise RecipeMismatch(Path(paths[0]).name, "encoder", f"a patient's slides come from several encoders or "
                                                             f"widths: {sorted(found)}")
    return np.mean(np.stack(vectors), axis=0).astype(np.float32), found.pop()


def bundle_slide_embedding(paths: list[Path], bundle: Any) -> np.ndarray:
    """patient_slide_embedding against a loaded bundle's recorded encoder and width."""
    names = None
    for member in getattr(bundle, "members", []):
        fitted = getattr(member, "preprocessors", {}).get(SLIDE_EMBEDDING)
        if fitted is not None and getattr(fitted, "names", None):
            names = list(fitted.names)
            break
    return patient_slide_embedding(paths, names)[0]


def embedding_files(folder: Path) -> list[Path]:
    """A case's slide embeddings: every `.h5`/`.npy`/`.json` (not a `.npy`'s sidecar) in `folder`, sorted."""
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in EMBEDDING_SUFFIXES)
    stems = {p.stem for p in files if p.suffix == ".npy"}
    return [p for p in files if not (p.suffix == ".json" and p.stem in stems)]
