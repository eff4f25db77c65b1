"""Per-modality encoders: a modality's input → one embedding per patient.

Every encoder is built as ``MODALITY_ENCODERS.build({"name": ..., "dim": D, ...})``, exposes ``out_dim``
and ``is_bag`` and is called as ``encoder(x, mask) -> (embedding (B, out_dim), attention (B, N) | None)``.
Vector encoders ignore ``mask``; bag encoders (mil.py) use it for padded patches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from chimera_surv.registry import Registry

MODALITY_ENCODERS: Registry[Any] = Registry("modality encoder")

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def mlp_layers(in_dim: int, hidden: Sequence[int], dropout: float = 0.0, activation: str = "relu",
               final_activation: bool = True, dropout_first: bool = False,
               final_dropout: bool = True) -> tuple[nn.Sequential, int]:
    """Linear → act → Dropout blocks (the pattern every seed uses); returns (module, out_dim).

    ``dropout_first`` puts Dropout *before* each Linear (seed 000 early-fusion MLP); otherwise after the
    activation. ``final_activation``/``final_dropout`` control the last block.
    """
    layers: list[nn.Module] = []
    d = in_dim
    for i, h in enumerate(hidden):
        last = i == len(hidden) - 1
        if dropout_first and dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(d, h))
        if not last or final_activation:
            layers.append(_ACTIVATIONS[activation]())
        if not dropout_first and dropout > 0 and (not last or final_dropout):
            layers.append(nn.Dropout(dropout))
        d = h
    return nn.Sequential(*layers), d


class VectorEncoder(nn.Module):
    """Wraps a (B, D) → (B, d) module in the encoder calling convention."""

    is_bag = False

    def __init__(self, body: nn.Module, out_dim: int) -> None:
        super().__init__()
        self.body = body
        self.out_dim = out_dim

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        return self.body(x), None


@MODALITY_ENCODERS.register("identity")
def identity(dim: int) -> VectorEncoder:
    """The raw vector (seed 002 clinical; seed 000 fusions on 2048-d embeddings)."""
    return VectorEncoder(nn.Identity(), dim)


@MODALITY_ENCODERS.register("mlp")
def mlp(dim: int, hidden: Sequence[int] = (128,), dropout: float = 0.0, activation: str = "relu",
        final_activation: bool = True) -> VectorEncoder:
    """A small MLP (clinical, MRI features)."""
    body, out = mlp_layers(dim, hidden, dropout, activation, final_activation, final_dropout=True)
    return VectorEncoder(body, out)


@MODALITY_ENCODERS.register("rna_mlp")
def rna_mlp(dim: int, hidden: Sequence[int] = (2048, 512, 128), dropout: float = 0.25) -> VectorEncoder:
    """Seed 002 RNA encoder: Linear(D,2048)→ReLU→Drop→Linear(2048,512)→ReLU→Drop→Linear(512,128)→ReLU."""
    body, out = mlp_layers(dim, hidden, dropout, "relu", final_activation=True, final_dropout=False)
    return VectorEncoder(body, out)


@MODALITY_ENCODERS.register("projection")
def projection(dim: int, out: int = 128, dropout: float = 0.1) -> VectorEncoder:
    """ModalSurv projection head Linear(D,128)→ReLU→Dropout(0.1); also the MRI / slide-embedding projection."""
    body, d = mlp_layers(dim, [out], dropout, "relu", final_activation=True, final_dropout=True)
    return VectorEncoder(body, d)


@MODALITY_ENCODERS.register("linear")
def linear(dim: int, out: int = 128) -> VectorEncoder:
    """A plain linear projection (no activation)."""
    return VectorEncoder(nn.Linear(dim, out), out)


def init_xavier(module: nn.Module) -> None:
    """Seed 002 init: xavier-normal Linear weights, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over the valid rows of a (B, N, D) bag; an empty bag gives zeros (never NaN)."""
    if mask is None:
        return x.mean(dim=1) if x.shape[1] else x.new_zeros(x.shape[0], x.shape[2])
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)


__all__ = ["MODALITY_ENCODERS", "VectorEncoder", "init_xavier", "masked_mean", "mlp_layers"]
