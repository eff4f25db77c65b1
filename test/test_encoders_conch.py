"""CONCH v1: our vision tower against the real CoCa code (conch-fork, test-time only) and the stored key list.

conch-fork is the MahmoodLab code without weights. It is the source of truth for the `visual.*` key names and for
the forward; the runtime never imports it. Regenerate the stored list with
`PYTHONPATH=. python test/test_encoders_conch.py`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from chimera_surv.encoders import build_meta, expected_shapes, get_spec, load_encoder, stored_key_shapes
from chimera_surv.encoders.base import KEYS_DIR, WeightMismatch, compare_shapes
from chimera_surv.encoders.conch import ConchVisual

PREFIX = "visual."


def _conch_config() -> dict:
    import conch.open_clip_custom as occ

    path = Path(occ.__file__).parent / "model_configs" / "conch_ViT-B-16.json"
    config = json.loads(path.read_text())
    config.pop("custom_text", None)  # read by conch's factory, not by CoCa
    return config


def reference_visual_shapes() -> dict[str, list[int]]:
    """`visual.*` key → shape of the real CoCa model, built on the meta device (prefix removed)."""
    from conch.open_clip_custom.coca_model import CoCa

    with torch.device("meta"):
        model = CoCa(**_conch_config())
    return {k.removeprefix(PREFIX): list(v.shape) for k, v in model.state_dict().items() if k.startswith(PREFIX)}


def test_our_module_matches_the_stored_key_list_on_meta() -> None:
    model = build_meta("conch_v1")
    shapes = expected_shapes(model)
    compare_shapes(stored_key_shapes("conch_v1"), shapes, "stored list for conch_v1")
    assert sum(math.prod(s) for s in shapes.values()) / 1e6 == pytest.approx(90.4, abs=0.05)  # ecosystem.md §2
    out = model(torch.empty(2, 3, 448, 448, device="meta"))
    assert tuple(out.shape) == (2, get_spec("conch_v1").dim)


def test_stored_list_is_the_real_coca_visual_tower() -> None:
    import conch  # noqa: F401 - conch-fork (requirements-dev.txt) is the test-time source of truth; never skipped
    compare_shapes(reference_visual_shapes(), stored_key_shapes("conch_v1"), "conch-fork CoCa visual.*")


def test_forward_equals_conch_encode_image_without_projection() -> None:
    """Same weights in both: our forward == CoCa.visual.forward_no_head (= encode_image(proj_contrast=False,
    normalize=False)). A 224-px input keeps it fast (the trunk has dynamic_img_size, as in CONCH)."""
    import conch  # noqa: F401 - conch-fork (requirements-dev.txt) is the test-time source of truth; never skipped
    from conch.open_clip_custom.coca_model import _build_vision_tower

    config = _conch_config()
    torch.manual_seed(0)
    theirs = _build_vision_tower(config["embed_dim"], config["vision_cfg"], config["embed_dim_caption"]).eval()
    ours = ConchVisual().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = theirs.forward_no_head(x, normalize=False)
        got = ours(x)
    assert got.shape == (2, 512)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_loader_keeps_only_visual_keys_of_a_full_coca_checkpoint(tmp_path: Path) -> None:
    """A checkpoint with text-tower keys beside `visual.*` loads strictly; a missing visual key fails loudly."""
    from safetensors.torch import save_file

    model = ConchVisual()
    state = {PREFIX + k: v.contiguous() for k, v in model.state_dict().items()}
    extra = {"text.token_embedding.weight": torch.zeros(4, 2), "logit_scale": torch.zeros(())}
    directory = tmp_path / "conch_v1"
    directory.mkdir()
    save_file({**state, **extra}, str(directory / "pytorch_model.safetensors"))
    encoder = load_encoder("conch_v1", tmp_path, "cpu")
    assert torch.equal(encoder.trunk.attn_pool_contrast.query, state[PREFIX + "attn_pool_contrast.query"])
    out = encoder.embed(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))  # resized to 448 by embed
    assert out.shape == (1, 512) and torch.isfinite(out).all()

    state.pop(PREFIX + "ln_contrast.bias")
    save_file(state, str(directory / "pytorch_model.safetensors"))
    with pytest.raises(WeightMismatch, match="ln_contrast.bias"):
        load_encoder("conch_v1", tmp_path, "cpu")


def write_reference_list() -> Path:
    """Record the real CoCa `visual.*` key/shape list (needs conch-fork) as encoders/keys/conch_v1.json."""
    import conch
    import timm

    shapes = reference_visual_shapes()
    payload = {"name": "conch_v1", "source": "conch-fork 0.1.0 CoCa(conch_ViT-B-16.json), meta device",
               "checkpoint_prefix": PREFIX, "conch": getattr(conch, "__version__", "0.1.0"), "timm": timm.__version__,
               "torch": torch.__version__.split("+")[0], "parameters": sum(math.prod(s) for s in shapes.values()),
               "keys": shapes}
    path = KEYS_DIR / "conch_v1.json"
    path.write_text(json.dumps(payload, indent=0) + "\n")
    return path


if __name__ == "__main__":
    print(write_reference_list())
