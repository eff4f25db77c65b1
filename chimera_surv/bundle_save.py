"""Writing a bundle (`bundle.json` + `weights.safetensors`): what train/ hands over, written deterministically and
readable by any user. The format and the reading side are in bundle.py; this half is imported only by training
and by tests, so the container's loader stays small.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chimera_surv.bundle import BUNDLE_JSON, FORMAT_VERSION, MODALITY_ORDER, WEIGHTS_FILE, BundleError

if TYPE_CHECKING:
    import torch

BUNDLE_FILE_MODE, BUNDLE_DIR_MODE = 0o644, 0o755  # readable by any user (the container runs as user 1001)



@dataclass
class MemberSpec:
    """What train/ hands to `save_bundle` for one fold model."""

    name: str
    network_config: dict[str, Any]
    input_dims: dict[str, int]
    state_dict: dict[str, Any]  # name → torch.Tensor
    preprocessing: dict[str, dict[str, Any]]  # modality → fitted transform's to_dict()
    risk_shift: float = 0.0
    risk_scale: float = 1.0
    kind: str = "network"  # or "classical": network_config is then the ClassicalModel's to_dict()


def _tensor(value: Any) -> Any:
    """A torch tensor, or a numpy array (classical members) made one."""
    import torch

    return value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))


def _canonical_json(obj: Any) -> str:
    """Insertion order is kept (not sorted): a network config's modality order and a schema's feature order
    carry meaning; determinism comes from building the document in a fixed order."""
    return json.dumps(obj, indent=1, allow_nan=False) + "\n"


def _atomic_write(path: Path, data: bytes) -> None:
    """Written whole or not at all, then readable by any user: mkstemp makes 0600 files, and the container runs as
    another user than the one who trained (an unreadable bundle would silently fall back to the prior)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, BUNDLE_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_bundle(out_dir: Path | str, *, task_id: int, modalities: list[str], members: list[MemberSpec],
                calibration: dict[str, Any], output_kind: str, recipe: dict[str, Any] | None = None,
                mri_kind: str | None = None, genes: list[str] | None = None,
                clinical_schema: dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> Path:
    """Write bundle.json + weights.safetensors deterministically (sorted keys, contiguous CPU tensors, no time)."""
    from safetensors.torch import save as safetensors_bytes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(BUNDLE_DIR_MODE)  # whatever the umask: the container's user must list and read it
    if not members:
        raise BundleError("a bundle needs at least one member")
    tensors: dict[str, torch.Tensor] = {}
    member_docs = []
    for index, spec in enumerate(members):
        prefix = f"m{index}."
        for key in sorted(spec.state_dict):
            tensors[prefix + key] = _tensor(spec.state_dict[key]).detach().to("cpu").contiguous().clone()
        doc = {"name": spec.name, "prefix": prefix, "network": spec.network_config,
               "input_dims": {m: int(d) for m, d in spec.input_dims.items()},
               "preprocessing": spec.preprocessing, "risk_shift": float(spec.risk_shift),
               "risk_scale": float(spec.risk_scale)}
        if spec.kind == "classical":
            doc = {"name": spec.name, "kind": "classical", "prefix": prefix, "model": spec.network_config,
                   **{k: v for k, v in doc.items() if k not in ("name", "prefix", "network")}}
        elif spec.kind != "network":
            raise BundleError(f"unknown member kind '{spec.kind}'")
        member_docs.append(doc)
    ordered = {key: tensors[key] for key in sorted(tensors)}
    # One metadata key only: safetensors serialises its metadata map in hash order, so two keys can swap.
    weight_bytes = safetensors_bytes(ordered, metadata={"format": "pt"})
    doc = {
        "format_version": FORMAT_VERSION,
        "task_id": int(task_id),
        "output_kind": output_kind,
        "modalities": [m for m in MODALITY_ORDER if m in modalities],
        "recipe": recipe,
        "mri_kind": mri_kind,
        "genes": list(genes or []),
        "clinical_schema": clinical_schema,
        "members": member_docs,
        "calibration": calibration,
        "weights_sha256": hashlib.sha256(weight_bytes).hexdigest(),
        "meta": meta or {},
    }
    _atomic_write(out / WEIGHTS_FILE, weight_bytes)
    _atomic_write(out / BUNDLE_JSON, _canonical_json(doc).encode())
    return out
