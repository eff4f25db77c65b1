"""The frozen-encoder registry and its strict local-weight loader.

Why: the platform is offline and a silently half-loaded checkpoint gives plausible-looking but meaningless
features, so every encoder entry names the exact files it expects under `model/encoders/<name>/` and loading
fails loudly (naming the path, or listing mismatched keys) instead of falling back to random weights. Only an
entry marked `seeded=True` (the tiny test encoder) may be built without a file, from a fixed seed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from chimera_surv.device import autocast_dtype, device_capability
from chimera_surv.registry import Registry

log = logging.getLogger(__name__)

ENCODERS: Registry[nn.Module] = Registry("encoder")
SPECS: dict[str, EncoderSpec] = {}
KEYS_DIR = Path(__file__).resolve().parent / "keys"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MissingWeights(FileNotFoundError):
    """No weight file where the encoder entry expects one."""


class WeightMismatch(ValueError):
    """A weight file whose keys or shapes do not match the architecture."""


class WeightFileError(RuntimeError):
    """A weight file that cannot be read (corrupt header, truncated, non-finite values). `source_file` names it, so
    the DEGRADED line blames the weight file, not the slides being encoded (predict.attempt reads it)."""

    def __init__(self, path: Path, cause: BaseException | str) -> None:
        try:
            size = f"{path.stat().st_size} bytes"
        except OSError:
            size = "size unknown"
        self.source_file = f"encoder weight file {path} ({size})"
        reason = cause if isinstance(cause, str) else f"{type(cause).__name__}: {str(cause).strip()[:200]}"
        super().__init__(f"{self.source_file} is unusable: {reason}")


@dataclass(frozen=True)
class EncoderSpec:
    """What a caller needs to know about an encoder without building it."""

    name: str
    modality: str  # "pathology" | "mri"
    dim: int  # output feature size
    weight_files: tuple[str, ...]  # accepted file names under <encoder_root>/<name>/, first found wins
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_size: int = 224  # patches are resized to this; 0 = any size (fully convolutional + global pooling)
    precision: str = "fp16"  # "fp32" or half ("fp16"/"bf16": device.autocast_dtype picks by GPU); CPU fp32
    seeded: bool = False  # may be built from a fixed seed without a weight file (test encoder only)
    strip_prefixes: tuple[str, ...] = ("module.",)  # removed from checkpoint keys (DataParallel, wrappers)
    ignore_prefixes: tuple[str, ...] = ()  # checkpoint keys the truncated architecture does not use
    keep_prefix: str = ""  # if set, only checkpoint keys under it are used, without it (CONCH: "visual.")
    t4_patches_per_s: float = 200.0  # reference end-to-end throughput on a T4 for the patch budget
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def register_encoder(spec: EncoderSpec) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder under `spec.name` in `ENCODERS` and keep its spec in `SPECS`."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        SPECS[spec.name] = spec
        builder.spec = spec  # type: ignore[attr-defined]  # so the builder hands its spec to PatchEncoder
        return ENCODERS.register(spec.name)(builder)

    return decorator


def get_spec(name: str) -> EncoderSpec:
    ENCODERS.get(name)  # readable error for unknown names
    return SPECS[name]


class PatchEncoder(nn.Module):
    """A frozen trunk plus its pooling; `embed` takes uint8 patches and returns float32 features."""

    def __init__(self, spec: EncoderSpec, trunk: nn.Module, pool: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.spec = spec
        self.trunk = trunk
        self._pool = pool
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.trunk(x)
        return self._pool(out) if self._pool is not None else out

    def state_dict_for_weights(self) -> dict[str, torch.Tensor]:
        """The trunk's state dict: the key names of the published checkpoints."""
        return self.trunk.state_dict()

    @torch.inference_mode()
    def embed(self, patches: torch.Tensor, full_precision: bool = False) -> torch.Tensor:
        """uint8 (B, 3, H, W) → float32 (B, dim); on CUDA channels_last and autocast in the dtype
        `device.autocast_dtype` picks (bf16 on Ampere+, fp16 before; fp32 entries stay fp32); fp32 on CPU.
        `full_precision` skips the autocast: `encode.encode_grids` re-encodes a patch whose half-precision
        features overflowed (a ViT-L's activations can exceed fp16's 65,504 on a T4)."""
        device = self.mean.device
        x = patches.to(device, non_blocking=True).float().div_(255.0)
        if self.spec.input_size and (x.shape[-1] != self.spec.input_size or x.shape[-2] != self.spec.input_size):
            x = nn.functional.interpolate(x, size=(self.spec.input_size,) * 2, mode="bilinear", antialias=True,
                                          align_corners=False)
        x = (x - self.mean) / self.std
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
            dtype = None if full_precision else autocast_dtype(self.spec.precision, device_capability(device))
            if dtype is None:
                return self(x).float()
            with torch.autocast("cuda", dtype=dtype):
                return self(x).float()
        return self(x).float()


def seeded_init_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Deterministic re-initialisation from a local generator (independent of the global RNG state)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in sorted(module.state_dict(keep_vars=True).items()):
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var") or (tensor.ndim == 1 and name.endswith("weight")):
                tensor.fill_(1.0)
            elif tensor.ndim == 1:
                tensor.zero_()
            else:
                fan_in = max(1, tensor[0].numel())
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / fan_in ** 0.5)
    return module


def expected_shapes(model: nn.Module) -> dict[str, list[int]]:
    """The key → shape map a checkpoint must match (buffers included, e.g. BatchNorm running stats)."""
    target = model.trunk if isinstance(model, PatchEncoder) else model
    return {k: list(v.shape) for k, v in target.state_dict().items()}


def build_meta(name: str, **kwargs: Any) -> nn.Module:
    """Build an encoder on the meta device: the full architecture, no weights, no memory."""
    with torch.device("meta"):
        return ENCODERS.build({"name": name, **kwargs})


def find_weight_file(name: str, encoder_root: Path | str | None) -> Path | None:
    spec = get_spec(name)
    if encoder_root is None:
        return None
    for file_name in spec.weight_files:
        candidate = Path(encoder_root) / name / file_name
        if candidate.is_file():
            return candidate
    return None


def _normalise_keys(spec: EncoderSpec, tensors: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in tensors.items():
        for prefix in spec.strip_prefixes:
            key = key.removeprefix(prefix)
        if spec.keep_prefix:
            if not key.startswith(spec.keep_prefix):
                continue
            key = key.removeprefix(spec.keep_prefix)
        if any(key.startswith(p) for p in spec.ignore_prefixes):
            continue
        cleaned[key] = value
    return cleaned


def checkpoint_shapes(path: Path) -> dict[str, list[int]]:
    """Key → shape from a checkpoint; for safetensors only the header is read."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            names = handle.keys()  # a safetensors handle, not a dict: it is not iterable itself
            return {k: list(handle.get_slice(k).get_shape()) for k in names}
    return {k: list(v.shape) for k, v in _load_tensors(path).items()}


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    # .bin/.pth: tensors only, never arbitrary pickled objects
    state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return dict(state)


def compare_shapes(expected: dict[str, list[int]], found: dict[str, list[int]], source: str, limit: int = 5) -> None:
    """Raise `WeightMismatch` listing a few missing, unexpected and wrongly shaped keys."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if list(expected[k]) != list(found[k]))
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:limit])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:limit])})")
    if wrong:
        shown = ", ".join(f"{k}: {found[k]} != {expected[k]}" for k in wrong[:limit])
        parts.append(f"{len(wrong)} with wrong shape (e.g. {shown})")
    raise WeightMismatch(f"weights {source} do not match the architecture: " + "; ".join(parts))


def load_encoder(name: str, encoder_root: Path | str | None, device: str | torch.device | None = None,
                 weights: str = "file") -> PatchEncoder:
    """Build encoder `name` and load `<encoder_root>/<name>/<weight file>` with a strict key/shape check.

    `weights="file"` (default) requires the file and raises `MissingWeights` naming the expected path(s).
    `weights="seeded"` is allowed only for entries with `seeded=True` (the tiny test encoder): it uses the file if
    present and otherwise a fixed-seed initialisation, so the demo runs end to end without any weight file.
    """
    spec = get_spec(name)
    if weights not in ("file", "seeded"):
        raise ValueError(f"weights must be 'file' or 'seeded', got {weights!r}")
    if weights == "seeded" and not spec.seeded:
        raise ValueError(f"encoder '{name}' has no seeded mode: it needs its weight file")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    path = find_weight_file(name, encoder_root)
    if path is None:
        if weights == "seeded":
            model = seeded_init_(ENCODERS.build(name), seed=int(spec.extra.get("seed", 0)))
            return _freeze(model, device)
        expected = " or ".join(str(Path(encoder_root or "<encoder_root>") / name / f) for f in spec.weight_files)
        missing = MissingWeights(f"encoder '{name}' needs its weights at {expected} (nothing is downloaded)")
        missing.source_file = f"encoder weights {expected}"  # type: ignore[attr-defined]
        raise missing
    model = build_meta(name)
    try:
        found = _normalise_keys(spec, checkpoint_shapes(path))
        compare_shapes(expected_shapes(model), found, str(path))
        tensors = _normalise_keys(spec, _load_tensors(path))
        bad = next((k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
        if bad is not None:
            raise WeightFileError(path, f"tensor {bad!r} holds non-finite values")
        model.trunk.load_state_dict(tensors, strict=True, assign=True)
    except WeightMismatch as err:
        err.source_file = f"encoder weight file {path}"  # type: ignore[attr-defined]
        raise
    except WeightFileError:
        raise
    except Exception as err:  # a corrupt header, a truncated file, a tensor torch cannot map: the file's fault
        raise WeightFileError(path, err) from err
    _rebuild_non_persistent(model, spec)
    log.info("loaded encoder %s from %s", name, path)
    return _freeze(model, device)


def _rebuild_non_persistent(model: PatchEncoder, spec: EncoderSpec) -> None:
    """Meta-built non-persistent buffers (normalisation, rotary tables) are re-created on the CPU."""
    model.mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    model.std = torch.tensor(spec.std).view(1, -1, 1, 1)
    meta = [n for n, b in model.named_buffers() if b.is_meta]
    if meta:
        reference = ENCODERS.build(spec.name)
        buffers = dict(reference.named_buffers())
        for name in meta:
            owner, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(owner) if owner else model, leaf, buffers[name])


def _freeze(model: PatchEncoder, device: torch.device) -> PatchEncoder:
    model.eval().requires_grad_(False)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def write_encoder_weights(name: str, encoder_root: Path | str, seed: int = 0,
                          file_name: str | None = None) -> Path:
    """Write a safetensors weight file for `name` from a fixed-seed init: exercises the real strict-loading path."""
    from safetensors.torch import save_file

    spec = get_spec(name)
    model = seeded_init_(ENCODERS.build(name), seed=seed)
    target = Path(encoder_root) / name / (file_name or next(f for f in spec.weight_files if f.endswith(".safetensors")))
    target.parent.mkdir(parents=True, exist_ok=True)
    state = {spec.keep_prefix + k: v.contiguous() for k, v in model.state_dict_for_weights().items()}
    save_file(state, str(target), metadata={"encoder": name, "init": f"seeded:{seed}"})
    return target


def stored_key_shapes(name: str) -> dict[str, list[int]]:
    """The key/shape list recorded for an architecture (encoders/keys/<name>.json)."""
    data = json.loads((KEYS_DIR / f"{name}.json").read_text())
    return {k: list(v) for k, v in data["keys"].items()}


def dump_key_shapes(name: str, directory: Path = KEYS_DIR) -> Path:
    """Record the meta-built architecture's key/shape list (run when an entry is added or deliberately changed)."""
    import timm

    model = build_meta(name)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    payload = {"name": name, "timm": timm.__version__, "torch": torch.__version__.split("+")[0],
               "parameters": sum(math.prod(s) for s in expected_shapes(model).values()),
               "keys": expected_shapes(model)}
    path.write_text(json.dumps(payload, indent=0) + "\n")
    return path
