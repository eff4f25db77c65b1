"""Every size and time bound applied to an input before it is decoded, in one place.

Why: a file declares its size in a header (TIFF tags, an .mha header, a JSON file's length) long before the pixels
are decoded, and a platform job has a wall-clock limit and a memory cap. Readers check the declared size against
these bounds first and refuse (raise with the size in the message) rather than hang or exhaust memory; the caller
then drops that modality with a DEGRADED line. The defaults hold every real CHIMERA input with a wide margin.
"""

from __future__ import annotations

# JSON sockets (clinical, RNA, inputs.json): the largest real one, the 19,359-gene RNA JSON, is under 1 MB.
MAX_JSON_BYTES = 64 * 2**20

# Tissue masks are read at their finest pyramid level with at most this many pixels (a uint8 map of 64 MB) ...
MAX_MASK_PIXELS = 64_000_000
# ... and a mask whose coarsest level is larger is shrunk while it is decoded, only up to this many declared
# pixels (about 10 s of decoding on one core); a larger single-level mask is refused (the slide then falls back
# to the tissue estimate).
MAX_MASK_DECODE_PIXELS = 1_000_000_000

# The tissue estimate (no usable mask) reads the first level whose longer side is at most this ...
ESTIMATE_MAX_SIDE = 2048
# ... and, on a slide without such a level, reads the coarsest level by tiles of this side (bounded memory),
ESTIMATE_TILE = 2048
# ... only when that level declares at most this many pixels (streamed through pyvips at about 65 Mpx/s on the
# loaded 2-core dev machine: 30 s; benchmarks/input_guards.py), and, read by openslide tiles (when pyvips cannot
# read the file), within this many seconds.
MAX_ESTIMATE_DECODE_PIXELS = 2_000_000_000
ESTIMATE_TIME_S = 60.0

# MRI volumes: voxels per volume (a T2 is ~10 M; 64 M float32 voxels are 256 MB before resampling).
MAX_MRI_VOXELS = 64_000_000

# Model files (bundle.json + weights.safetensors): a tree ensemble's nodes over all trees (a 1,000-tree forest of
# depth-12 trees is ~8 M nodes) and the depth any one tree may reach (a visit bound on the walk at predict time).
MAX_TREE_NODES = 50_000_000
MAX_TREE_DEPTH = 4_096

# Patch features imported from `.h5` (Trident / CLAM): the declared dataset size is checked before reading.
# The largest real bag, a 200k-patch slide of 1536-d features (H-optimus), is 307 M values (1.2 GB float32).
MAX_H5_VALUES = 400_000_000
MAX_H5_FEATURE_DIM = 16_384

# Tables (predict_cohort's CSV, train's table route): the file and any one cell. A 200 kB cell is not a value.
MAX_TABLE_BYTES = 512 * 2**20
MAX_TABLE_CELL_CHARS = 10_000
