"""A MedicalNet-style 3D ResNet (Med3D, Chen et al. 2019) as a frozen MRI volume encoder.

Why written here rather than imported from MONAI: it is ~60 lines, avoids a large dependency in the container, and
keeps the key names of the published MedicalNet checkpoints (`conv1`, `bn1`, `layer1.0.conv1`, `downsample.0` ...;
their `module.` prefix is stripped and the segmentation head `conv_seg.*` ignored). MedicalNet was pretrained on
single-channel volumes, so T2, ADC and HBV are each encoded by the same network and the three 512-d vectors are
concatenated (1536-d, in that order).
"""

from __future__ import annotations

import torch
from torch import nn

from chimera_surv.encoders.base import EncoderSpec, PatchEncoder, register_encoder

MRI_CHANNELS = ("t2", "adc", "hbv")


class BasicBlock3d(nn.Module):
    """Two 3x3x3 convolutions with a residual connection (a 1x1x1 conv + BN shortcut when shapes change)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv3d(inplanes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm3d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet3d(nn.Module):
    """MedicalNet layout: stride-2 stem and max-pool, layer2 stride 2, layers 3/4 dilated (2, 4) at stride 1."""

    def __init__(self, blocks: tuple[int, int, int, int] = (1, 1, 1, 1), in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        self.layer1 = self._layer(64, 64, blocks[0])
        self.layer2 = self._layer(64, 128, blocks[1], stride=2)
        self.layer3 = self._layer(128, 256, blocks[2], dilation=2)
        self.layer4 = self._layer(256, 512, blocks[3], dilation=4)

    @staticmethod
    def _layer(inplanes: int, planes: int, count: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        layers = [BasicBlock3d(inplanes, planes, stride, dilation)]
        layers += [BasicBlock3d(planes, planes, 1, dilation) for _ in range(count - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3, 4))


class VolumeEncoder(PatchEncoder):
    """Encodes (B, 3, D, H, W) normalised volumes channel by channel with one single-channel trunk."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.trunk(x[:, c:c + 1]) for c in range(x.shape[1])]
        return torch.cat(parts, dim=1)

    @torch.inference_mode()
    def embed(self, volumes: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """float (B, 3, D, H, W), already normalised per channel → float32 (B, 1536)."""
        device = next(self.trunk.parameters()).device
        return self(volumes.to(device).float()).float()


def _mri_spec(name: str, notes: str) -> EncoderSpec:
    return EncoderSpec(name=name, modality="mri", dim=512 * len(MRI_CHANNELS),
                       weight_files=("model.safetensors", "pretrain.pth"), mean=(0.0,), std=(1.0,), input_size=0,
                       precision="fp32", strip_prefixes=("module.",), ignore_prefixes=("conv_seg.",),
                       notes=notes, extra={"input_shape_dhw": (32, 128, 128)})


@register_encoder(_mri_spec("medicalnet-resnet10", "MedicalNet ResNet-10 (shortcut B), per-sequence 512-d"))
def build_medicalnet_resnet10() -> VolumeEncoder:
    return VolumeEncoder(build_medicalnet_resnet10.spec, ResNet3d((1, 1, 1, 1)))


@register_encoder(_mri_spec("medicalnet-resnet18", "MedicalNet ResNet-18 (shortcut B), per-sequence 512-d"))
def build_medicalnet_resnet18() -> VolumeEncoder:
    return VolumeEncoder(build_medicalnet_resnet18.spec, ResNet3d((2, 2, 2, 2)))
