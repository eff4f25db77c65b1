"""CONCH v1 vision tower, written here so that inference does not depend on the CONCH code base.

Why: CONCH (MahmoodLab) is a CoCa model whose image embedding needs only its vision half, a timm ViT-B/16 at 448 px
followed by an attentional pooler. The CONCH package pulls in `transformers` and a tokenizer for the text half. This
module has the same `visual.*` key names and shapes as `CoCa(**conch_ViT-B-16.json)` (conch-fork 0.1.0, checked on
the meta device by test_encoders_conch.py), and its forward equals `encode_image(x, proj_contrast=False,
normalize=False)`: ViT tokens (class token included, final norm) -> one-query attention pool -> LayerNorm -> 512.
The checkpoint holds the whole CoCa model; the registry keeps only its `visual.` keys and checks them strictly.
"""

from __future__ import annotations

import torch
from torch import nn

from chimera_surv.encoders.base import EncoderSpec, PatchEncoder, register_encoder

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class AttentionalPooler(nn.Module):
    """`n_queries` learned queries attend over the (layer-normed) tokens; keys/values may be wider than queries."""

    def __init__(self, d_model: int, context_dim: int, n_head: int = 8, n_queries: int = 1) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(n_queries, d_model))
        self.attn = nn.MultiheadAttention(d_model, n_head, kdim=context_dim, vdim=context_dim, batch_first=True)
        self.ln_q = nn.LayerNorm(d_model)
        self.ln_k = nn.LayerNorm(context_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        context = self.ln_k(tokens)
        query = self.ln_q(self.query).unsqueeze(0).expand(tokens.shape[0], -1, -1)
        return self.attn(query, context, context, need_weights=False)[0]


class ConchVisual(nn.Module):
    """CoCa's `visual` module for CONCH v1. The caption pooler and `proj_contrast` are kept only so that the
    checkpoint loads strictly; the embedding (before the contrastive projection) does not use them."""

    def __init__(self, image_size: int = 448, embed_dim: int = 512, caption_dim: int = 768, heads: int = 8,
                 caption_queries: int = 256) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        self.trunk = VisionTransformer(img_size=image_size, patch_size=16, embed_dim=768, depth=12, num_heads=12,
                                       mlp_ratio=4, num_classes=0, dynamic_img_size=True)
        width = self.trunk.num_features
        self.attn_pool_contrast = AttentionalPooler(embed_dim, width, heads, 1)
        self.ln_contrast = nn.LayerNorm(embed_dim)
        self.proj_contrast = nn.Parameter(torch.zeros(embed_dim, embed_dim))
        self.attn_pool_caption = AttentionalPooler(caption_dim, width, heads, caption_queries)
        self.ln_caption = nn.LayerNorm(caption_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.trunk.forward_features(x)
        return self.ln_contrast(self.attn_pool_contrast(tokens)[:, 0])


@register_encoder(EncoderSpec(
    name="conch_v1", modality="pathology", dim=512,
    weight_files=("pytorch_model.bin", "pytorch_model.safetensors", "model.safetensors"),
    mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, input_size=448, precision="fp32", keep_prefix="visual.",
    t4_patches_per_s=30.0,
    notes="CONCH v1 vision tower (ViT-B/16 @448 + attentional pooler), encode_image(proj_contrast=False, "
          "normalize=False); fp32 as Trident's default for CONCH v1 (fp16 not checked)"))
def build_conch_v1() -> PatchEncoder:
    return PatchEncoder(build_conch_v1.spec, ConchVisual())
