"""ResNet for CIFAR-10 as in He et al. 2016, "Deep Residual Learning", section 4.2.

A 3x3 stem conv (16 channels), three stages of `n` basic blocks with 16, 32 and 64
channels on 32x32, 16x16 and 8x8 feature maps, global average pooling and a
10-way linear layer: depth = 6n + 2 (20, 32, 44, 56, 110). Shortcuts are the
paper's option A: parameter-free identity, and where a stage halves the map and
doubles the channels, the input is subsampled by 2 and zero-padded with the new
channels. `resnet20()` therefore has 269,722 parameters (0.27 M, Table 6). The
often-quoted 272,474 is option B: two 1x1 projection convs with BatchNorm add
16*32 + 2*32 + 32*64 + 2*64 = 2,752 parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from labkit.models import kaiming_init

STAGE_CHANNELS = (16, 32, 64)


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample the map by `stride` and zero-pad the new channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option-A shortcut cannot shrink channels ({in_channels} -> {out_channels})")
        self.stride = stride
        extra = out_channels - in_channels
        self.pad_front, self.pad_back = extra // 2, extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad_front or self.pad_back:
            # F.pad pads the last dims first: (W left, W right, H top, H bottom, C front, C back).
            x = F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))
        return x


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with ReLU, added to the (option-A) shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut: nn.Module = (
            PadShortcut(in_channels, out_channels, stride) if needs_projection else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 3x32x32 images: `blocks_per_stage` = n basic blocks in each of 3 stages."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")
        self.blocks_per_stage = blocks_per_stage
        self.conv1 = nn.Conv2d(in_channels, STAGE_CHANNELS[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_CHANNELS[0])
        stages = []
        channels = STAGE_CHANNELS[0]
        for index, width in enumerate(STAGE_CHANNELS):
            blocks = []
            for block in range(blocks_per_stage):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        kaiming_init(self, linear=True)  # as in the paper (its ref. [13])

    @property
    def depth(self) -> int:
        return 6 * self.blocks_per_stage + 2

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled 64-dimensional feature vector before the classifier."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def cifar_resnet(depth: int, num_classes: int = 10) -> CifarResNet:
    """The CIFAR ResNet of the given depth (6n + 2: 20, 32, 44, 56, 110, ...)."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(
            f"CIFAR ResNet depth must be 6n + 2 with n >= 1 (e.g. 20, 32, 44, 56, 110), got {depth!r}"
        )
    return CifarResNet((depth - 2) // 6, num_classes=num_classes)


def resnet20(num_classes: int = 10) -> CifarResNet:
    """ResNet-20 (n = 3): 269,722 parameters with a 10-way head."""
    return cifar_resnet(20, num_classes)


def resnet32(num_classes: int = 10) -> CifarResNet:
    """ResNet-32 (n = 5): 0.46 M parameters."""
    return cifar_resnet(32, num_classes)


def resnet44(num_classes: int = 10) -> CifarResNet:
    """ResNet-44 (n = 7): 0.66 M parameters."""
    return cifar_resnet(44, num_classes)


def resnet56(num_classes: int = 10) -> CifarResNet:
    """ResNet-56 (n = 9): 0.85 M parameters."""
    return cifar_resnet(56, num_classes)
