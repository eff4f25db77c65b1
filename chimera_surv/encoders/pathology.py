"""Pathology patch encoders: the foundation models the CHIMERA entries used, a ResNet-50 baseline, a tiny test net.

Architectures are the timm kwargs seen working in ecosystem.md §2 (UNI's are identical to the organisers'
baseline). Throughput references are anchors.md §2 T4 figures at realistic efficiency; they only size the patch
budget. Normalisation constants are the model cards' (UNI, UNI2-h, Virchow2, CONCH: ImageNet/OpenAI-CLIP style;
H-optimus-0: its own).
"""

from __future__ import annotations

import torch
from torch import nn

from chimera_surv.encoders.base import EncoderSpec, PatchEncoder, register_encoder

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)
HF_FILES = ("model.safetensors", "pytorch_model.bin")


def _timm(name: str, **kwargs: object) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, **kwargs)


@register_encoder(EncoderSpec(
    name="uni", modality="pathology", dim=1024, weight_files=HF_FILES, precision="fp16", t4_patches_per_s=250.0,
    notes="UNI ViT-L/16 (MahmoodLab/UNI), class token"))
def build_uni() -> PatchEncoder:
    trunk = _timm("vit_large_patch16_224", img_size=224, patch_size=16, init_values=1e-5, num_classes=0,
                  dynamic_img_size=True)
    return PatchEncoder(build_uni.spec, trunk)


@register_encoder(EncoderSpec(
    name="uni2-h", modality="pathology", dim=1536, weight_files=HF_FILES, precision="bf16", t4_patches_per_s=90.0,
    notes="UNI2-h ViT-g/14 depth 24, 8 register tokens, SwiGLU"))
def build_uni2_h() -> PatchEncoder:
    from timm.layers import SwiGLUPacked

    trunk = _timm("vit_giant_patch14_224", img_size=224, patch_size=14, depth=24, num_heads=24, init_values=1e-5,
                  embed_dim=1536, mlp_ratio=2.66667 * 2, num_classes=0, no_embed_class=True,
                  mlp_layer=SwiGLUPacked, act_layer=nn.SiLU, reg_tokens=8, dynamic_img_size=True)
    return PatchEncoder(build_uni2_h.spec, trunk)


@register_encoder(EncoderSpec(
    name="h-optimus-0", modality="pathology", dim=1536, weight_files=HF_FILES, mean=HOPTIMUS_MEAN, std=HOPTIMUS_STD,
    precision="fp16", t4_patches_per_s=55.0, notes="H-optimus-0 ViT-g/14 (dinov2 style), 4 registers, class token"))
def build_h_optimus_0() -> PatchEncoder:
    trunk = _timm("vit_giant_patch14_reg4_dinov2", img_size=224, init_values=1e-5, num_classes=0,
                  dynamic_img_size=False)
    return PatchEncoder(build_h_optimus_0.spec, trunk)


def _class_and_mean_patch(tokens: torch.Tensor, registers: int = 4) -> torch.Tensor:
    """Virchow2's embedding: the class token concatenated with the mean of the patch tokens (after registers)."""
    return torch.cat([tokens[:, 0], tokens[:, 1 + registers:].mean(1)], dim=-1)


@register_encoder(EncoderSpec(
    name="virchow2", modality="pathology", dim=2560, weight_files=HF_FILES, precision="fp16", t4_patches_per_s=95.0,
    notes="Virchow2 ViT-H/14, 4 registers, SwiGLU; class token + mean patch token"))
def build_virchow2() -> PatchEncoder:
    from timm.layers import SwiGLUPacked

    trunk = _timm("vit_huge_patch14_224", img_size=224, init_values=1e-5, num_classes=0, reg_tokens=4,
                  mlp_ratio=5.3375, global_pool="", dynamic_img_size=True, mlp_layer=SwiGLUPacked,
                  act_layer=nn.SiLU)
    return PatchEncoder(build_virchow2.spec, trunk, pool=_class_and_mean_patch)


@register_encoder(EncoderSpec(
    name="h0-mini", modality="pathology", dim=1536, weight_files=HF_FILES, mean=HOPTIMUS_MEAN, std=HOPTIMUS_STD,
    precision="fp16", t4_patches_per_s=600.0,
    notes="H0-mini (bioptimus/H0-mini): ViT-B/14 dinov2 distilled from H-optimus-0, 4 registers, SwiGLU; "
          "class token + mean patch token"))
def build_h0_mini() -> PatchEncoder:
    """timm kwargs of the hub config as used by public H0-mini loaders (docs/features.md gives the sources)."""
    from timm.layers import SwiGLUPacked

    trunk = _timm("vit_base_patch14_reg4_dinov2", img_size=224, init_values=1e-5, num_classes=0, reg_tokens=4,
                  mlp_ratio=5.33334, global_pool="", dynamic_img_size=True, mlp_layer=SwiGLUPacked,
                  act_layer=nn.SiLU)
    return PatchEncoder(build_h0_mini.spec, trunk, pool=_class_and_mean_patch)


class _TruncatedResNet(nn.Module):
    """ResNet-50 through layer3, average-pooled: the 1024-d ImageNet baseline of CLAM-style pipelines."""

    def __init__(self) -> None:
        super().__init__()
        import timm

        net = timm.create_model("resnet50", pretrained=False, num_classes=0)
        self.conv1, self.bn1, self.act1, self.maxpool = net.conv1, net.bn1, net.act1, net.maxpool
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return x.mean(dim=(2, 3))


@register_encoder(EncoderSpec(
    name="resnet50-trunc", modality="pathology", dim=1024, weight_files=HF_FILES, precision="fp16",
    ignore_prefixes=("layer4.", "fc."), t4_patches_per_s=900.0,
    notes="ImageNet ResNet-50 (timm/torchvision key names) truncated after layer3; layer4/fc keys are ignored"))
def build_resnet50_trunc() -> PatchEncoder:
    return PatchEncoder(build_resnet50_trunc.spec, _TruncatedResNet())


class TinyConvNet(nn.Module):
    """A ~8k-parameter conv net: fast on CPU, deterministic, for tests and the end-to-end demo."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, kernel_size=4, stride=4)
        self.mid = nn.Conv2d(8, 16, kernel_size=2, stride=2)
        self.deep = nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1)
        self.head = nn.Linear(64, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.gelu(self.stem(x))
        x = nn.functional.gelu(self.mid(x))
        x = nn.functional.gelu(self.deep(x))
        # mean and spread of each channel: colour/texture summaries a survival model can use
        pooled = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
        return self.head(pooled)


@register_encoder(EncoderSpec(
    name="test-tiny", modality="pathology", dim=64, weight_files=("model.safetensors",), precision="fp32", input_size=0,
    seeded=True, t4_patches_per_s=5000.0, extra={"seed": 0},
    notes="tiny seeded conv net; load_encoder(..., weights='seeded') builds it without a file"))
def build_test_tiny() -> PatchEncoder:
    return PatchEncoder(build_test_tiny.spec, TinyConvNet(64))

