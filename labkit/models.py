"""Weight initialisation shared by labkit's CNNs."""

from __future__ import annotations

from torch import nn


def kaiming_init(model: nn.Module, linear: bool = False) -> None:
    """He (Kaiming) normal init, fan-out, for every conv (and, with `linear`, every Linear layer), zero
    biases, and BatchNorm at weight 1 / bias 0: He et al. 2016's scheme, which torchvision's ResNets
    use for their convs (they keep PyTorch's default init for the final Linear)."""
    kinds = (nn.Conv2d, nn.Linear) if linear else (nn.Conv2d,)
    for module in model.modules():
        if isinstance(module, kinds):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
