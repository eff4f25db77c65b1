"""Frozen encoders, built by name from a registry and loaded from local weight files only.

`ENCODERS.build({"name": "uni"})` builds an architecture (random init); `load_encoder(name, encoder_root, device)`
loads `<encoder_root>/<name>/<file>` with a strict key/shape check. Importing this package registers every entry.
"""

from __future__ import annotations

from chimera_surv.encoders import (
    conch,  # noqa: F401  (registers CONCH v1)
    mri,  # noqa: F401  (registers the MRI entries)
    pathology,  # noqa: F401  (registers the pathology entries)
)
from chimera_surv.encoders.base import (
    ENCODERS,
    SPECS,
    EncoderSpec,
    MissingWeights,
    PatchEncoder,
    WeightFileError,
    WeightMismatch,
    build_meta,
    expected_shapes,
    get_spec,
    load_encoder,
    stored_key_shapes,
    write_encoder_weights,
)

__all__ = ["ENCODERS", "SPECS", "EncoderSpec", "MissingWeights", "PatchEncoder", "WeightFileError", "WeightMismatch",
           "build_meta", "expected_shapes", "get_spec", "load_encoder", "stored_key_shapes", "write_encoder_weights"]
