"""ResNets for 64×64 images: torchvision's ResNet18 (the course model; its ImageNet stem shrinks 64×64 to 16×16
before the first stage), a "-64" variant (3×3 stride-1 stem, no max-pool: ~16× the compute) and
`ConfigurableResNet` for the ablations (torchvision's parameter names at its defaults); `build_model(arch)`."""

from __future__ import annotations

import re
import urllib.error

import torch
from torch import nn
from torchvision import models as tv_models

from labkit.errors import CheckpointError, DataError
from labkit.models import kaiming_init

#: blocks per stage for each depth (BasicBlock ResNets)
STAGES = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
ARCHS = ("resnet18", "resnet18-64", "resnet10", "resnet10-64", "resnet34", "resnet34-64")


def _imagenet_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet ResNet18 weights (downloaded once to $TORCH_HOME/hub/checkpoints)."""
    weights = tv_models.ResNet18_Weights.IMAGENET1K_V1
    try:
        return torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        raise DataError(f"could not get the pretrained ImageNet ResNet18 weights from {weights.url} ({err}). This "
                        "machine may have no internet access. Either train from scratch (pretrained=False, or leave "
                        "out --pretrained), or download that file on a connected machine into "
                        f"{torch.hub.get_dir()}/checkpoints/ (set TORCH_HOME to use another folder).") from err


def _load_pretrained(model: nn.Module, skip: tuple[str, ...]) -> None:
    """Copy the ImageNet weights into `model`, leaving the parameters whose names start with `skip`."""
    state = {k: v for k, v in _imagenet_state_dict().items() if not k.startswith(skip)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(skip) for k in missing):
        raise CheckpointError(f"pretrained weights do not fit this model: missing {missing}, "
                              f"unexpected {unexpected}.")


def resnet18(num_classes: int = 200, pretrained: bool = False) -> nn.Module:
    """torchvision's ResNet18 with a `num_classes`-way head (ImageNet weights for the body if `pretrained`)."""
    model = tv_models.resnet18(num_classes=num_classes)
    if pretrained:
        _load_pretrained(model, skip=("fc.",))
    return model


def small_input_stem(model: nn.Module) -> nn.Module:
    """Swap torchvision's ImageNet stem for a 3×3 stride-1 conv and no max-pool (in place)."""
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def resnet18_64(num_classes: int = 200, pretrained: bool = False) -> nn.Module:
    """ResNet18 for 64×64 inputs: 3×3 stride-1 stem, no max-pool (pretrained: all but conv1 and fc)."""
    model = small_input_stem(tv_models.resnet18(num_classes=num_classes))
    if pretrained:
        _load_pretrained(model, skip=("fc.", "conv1."))
    return model


class BasicBlock(nn.Module):
    """Two 3×3 convs; batch norm and the residual (shortcut) connection can be switched off."""

    def __init__(self, in_planes: int, planes: int, stride: int, batch_norm: bool, residual: bool) -> None:
        super().__init__()
        norm = nn.BatchNorm2d if batch_norm else (lambda _: nn.Identity())
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=not batch_norm)
        self.bn1 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=not batch_norm)
        self.bn2 = norm(planes)
        self.residual = residual
        self.downsample: nn.Module | None = None
        if residual and (stride != 1 or in_planes != planes):
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=not batch_norm), norm(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class ConfigurableResNet(nn.Module):
    """A BasicBlock ResNet with the ablations' knobs: depth 10/18/34, batch norm (else conv biases), residual
    (False: the plain CNN of the same shape), dropout before the head, stem "imagenet" (7×7 stride 2 + max-pool)
    or "small" (3×3 stride 1)."""

    def __init__(self, depth: int = 18, num_classes: int = 200, batch_norm: bool = True, residual: bool = True,
                 dropout: float = 0.0, stem: str = "imagenet", width: int = 64) -> None:
        super().__init__()
        if depth not in STAGES:
            raise ValueError(f"depth must be one of {sorted(STAGES)}, got {depth}.")
        if stem not in ("imagenet", "small"):
            raise ValueError(f"stem must be 'imagenet' or 'small', got {stem!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        self.config = {"depth": depth, "num_classes": num_classes, "batch_norm": batch_norm,
                       "residual": residual, "dropout": dropout, "stem": stem, "width": width}
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=not batch_norm)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=not batch_norm)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(width) if batch_norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        planes = width
        for stage, blocks in enumerate(STAGES[depth], start=1):
            out_planes = width * 2 ** (stage - 1)
            layers = []
            for b in range(blocks):
                stride = 2 if (stage > 1 and b == 0) else 1
                layers.append(BasicBlock(planes, out_planes, stride, batch_norm, residual))
                planes = out_planes
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(planes, num_classes)
        kaiming_init(self)  # torchvision's init, so the default configuration matches `resnet18` exactly

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


def parse_arch(arch: str) -> tuple[int, str]:
    """'resnet18' -> (18, 'imagenet'); 'resnet10-64' -> (10, 'small')."""
    match = re.fullmatch(r"resnet(\d+)(-64)?", arch.strip().lower())
    if not match or int(match.group(1)) not in STAGES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)} "
                         "('-64' = 3×3 stride-1 stem without max-pool, for 64×64 images).")
    return int(match.group(1)), "small" if match.group(2) else "imagenet"


def build_model(arch: str = "resnet18", num_classes: int = 200, pretrained: bool = False, **options) -> nn.Module:
    """torchvision's ResNet18 ('resnet18', 'resnet18-64') or, for other depths or `options` (dropout, batch_norm,
    residual, width), a `ConfigurableResNet`."""
    depth, stem = parse_arch(arch)
    if depth == 18 and not options:
        return resnet18_64(num_classes, pretrained) if stem == "small" else resnet18(num_classes, pretrained)
    if pretrained:
        raise ValueError(f"pretrained ImageNet weights exist only for plain ResNet18, not {arch} "
                         f"with {options or 'this depth'}.")
    return ConfigurableResNet(depth=depth, num_classes=num_classes, stem=stem, **options)
