"""Every `compare` entry of every shipped config builds the model it names: the seed's own preset (encoders,
fusion, head, init), the main model's modality settings elsewhere (train/networks.py resolve_architecture)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from chimera_surv.models import build_network, preset
from chimera_surv.tasks import TASKS
from train.config import load_config
from train.networks import (
    DEFAULT_ENCODERS,
    complete_network_config,
    is_bag_encoder,
    resolve_architecture,
    with_time_grid,
)
from train.protocol import architectures
from train.selection import is_classical

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "train" / "configs").glob("*.yaml"))
DIMS = {"wsi": 1024, "clinical": 27, "rna": 128, "mri": 12}


def _entries():
    for path in CONFIGS:
        config = load_config(path)
        for name, entry in (config.get("compare") or {}).items():
            yield pytest.param(path.name, config, name, entry, id=f"{path.stem}.{name}")


@pytest.mark.parametrize(("config_name", "config", "name", "entry"), list(_entries()))
def test_compare_entry_builds_its_preset(config_name, config, name, entry):
    arch = architectures(config)[name]
    available = config.get("modalities") or list(TASKS[config["task"]].modalities)
    modalities = [m for m in available if m in (arch.get("modalities") or available)]
    net_cfg, _ = complete_network_config(arch, {m: DIMS[m] for m in modalities}, survival=config["task"] != 2)
    net_cfg, _ = with_time_grid(net_cfg, config["train"], np.array([3.0, 20.0, 60.0]), np.array([1, 0, 1]))
    with torch.device("meta"):
        net = build_network(net_cfg)
    if is_classical(entry):  # auto or a classical family: no network to build (test_auto.py covers it)
        return
    # `model: auto` has no network settings to inherit: the entries then start from the defaults
    main = config["model"] if isinstance(config["model"], dict) else {}
    if "preset" not in entry:  # a plain entry: the main model's encoders unless it names its own
        for m in modalities:
            expected = (entry.get("encoders") or {}).get(m) or (main.get("encoders") or {}).get(m)
            if expected is not None:
                assert net_cfg["modalities"][m]["encoder"] == expected
        return
    ref = preset(entry["preset"])
    assert net_cfg["fusion"] == ref["fusion"]
    assert net_cfg.get("init", "default") == ref.get("init", "default")
    head = {k: v for k, v in net_cfg["head"].items() if k not in ("bin_times", "n_bins")}
    assert head == {k: v for k, v in ref["head"].items() if k != "n_bins"}
    own = entry.get("encoders") or {}
    for m in modalities:
        built = net_cfg["modalities"][m]["encoder"]
        if m in ref["modalities"] and m not in own:
            assert built == ref["modalities"][m]["encoder"], m
        elif m in own:  # overriding a preset encoder is allowed only where it cannot read this input (a bag)
            seed_encoder = ref["modalities"][m]["encoder"]
            assert m == "wsi" and not is_bag_encoder(seed_encoder) and is_bag_encoder(built)
            assert {k: built[k] for k in ("out", "dropout")} == {k: seed_encoder[k] for k in ("out", "dropout")}
        else:
            assert built == ((main.get("encoders") or {}).get(m) or DEFAULT_ENCODERS[m]), m  # inherited
    if entry["preset"].startswith("seed002"):
        assert net.encoders["wsi"].out_dim == 512 and net.encoders["wsi"].attn_score.in_features == 256
        assert net.head.linear.in_features == {"seed002_abmil_surv": 512 + 27 + 128, "seed002_abmil_pg": 128,
                                               "seed002_abmil_pg_res": 256}[entry["preset"]]
    if entry["preset"] == "seed003_modalsurv":
        assert net_cfg["head"]["n_bins"] == 30 and net.head.variant == "modalsurv"
        edges = np.linspace(5.0, 250.0, 31)  # ModalSurv Task 3 main.py bin edges
        assert net_cfg["head"]["bin_times"] == pytest.approx(((edges[:-1] + edges[1:]) / 2).tolist())


def test_task3_compares_every_seed002_model_and_modalsurv():
    config = load_config(CONFIGS[0].parent / "task3.yaml")
    presets = {e.get("preset") for e in config["compare"].values()}
    assert {"seed002_abmil_surv", "seed002_abmil_pg", "seed002_abmil_pg_res", "seed003_modalsurv"} <= presets


def test_resolution_order_and_errors():
    main = {"modalities": ["wsi", "clinical"], "encoders": {"wsi": {"name": "abmil_gated", "hidden": 64},
                                                            "clinical": {"name": "mlp", "hidden": [8]}},
            "fusion": {"name": "concat_mlp"}, "head": {"name": "deephit"}, "missing": "zero"}
    plain = resolve_architecture({"fusion": {"name": "lmf"}}, main)
    assert plain == {"modalities": ["wsi", "clinical"], "encoders": main["encoders"], "missing": "zero",
                     "fusion": {"name": "lmf"}}  # never the main model's fusion or head
    seeded = resolve_architecture({"preset": "seed002_abmil_pg", "encoders": {"clinical": {"name": "linear"}},
                                   "missing": "token"}, main)
    assert seeded["encoders"]["wsi"]["hidden"] == 512 and seeded["encoders"]["clinical"] == {"name": "linear"}
    assert seeded["init"] == "xavier_normal" and seeded["missing"] == "token"
    with pytest.raises(ValueError, match="bag"):
        resolve_architecture({"preset": "seed003_modalsurv"}, main)
    with pytest.raises(ValueError, match="unknown architecture keys"):
        resolve_architecture({"fuson": {}}, main)
    assert resolve_architecture({"preset": "seed002_abmil_pg"}, "auto")["fusion"]["name"] == "pg_bilinear"
