"""ResNets for Tiny-ImageNet: the course model, the 64×64 variant, ablation switches, pretrained errors."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from labkit.errors import DataError
from labkit.labs.tiny_imagenet.model import (
    ARCHS,
    ConfigurableResNet,
    build_model,
    resnet18,
    resnet18_64,
)


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_course_model_is_torchvision_resnet18_with_200_way_head():
    model = resnet18()
    assert _params(model) == 11_279_112
    assert model.fc.out_features == 200 and model.fc.in_features == 512


def test_64_variant_keeps_resolution_in_the_stem():
    model = resnet18_64()
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    features = {}
    model.layer4.register_forward_hook(lambda m, i, o: features.update(layer4=o.shape))
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 200)
    assert features["layer4"] == (1, 512, 8, 8)  # vs 2×2 with the ImageNet stem


def test_configurable_default_is_exactly_torchvision_resnet18():
    reference = resnet18()
    ours = ConfigurableResNet()
    ours.load_state_dict(reference.state_dict())  # strict: same names and shapes
    reference.eval(), ours.eval()
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(ours(x), reference(x), atol=1e-5)


@pytest.mark.parametrize("depth,params", [(10, 5_008_392), (18, 11_279_112), (34, 21_387_272)])
def test_depths(depth, params):
    assert _params(ConfigurableResNet(depth=depth)) == params


def test_switches_change_the_network():
    x = torch.randn(2, 3, 64, 64)
    plain = ConfigurableResNet(depth=10, residual=False)
    assert not any("downsample" in name for name, _ in plain.named_modules())
    no_bn = ConfigurableResNet(depth=10, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in no_bn.modules())
    dropped = ConfigurableResNet(depth=10, dropout=0.5).train()
    features = dropped.avgpool(dropped.layer4(dropped.layer3(dropped.layer2(dropped.layer1(
        dropped.maxpool(dropped.relu(dropped.bn1(dropped.conv1(x)))))))))
    assert (dropped.dropout(features.flatten(1)) == 0).float().mean() > 0.3
    for model in (plain, no_bn, dropped):
        assert model(x).shape == (2, 200)
    with pytest.raises(ValueError, match="depth must be one of"):
        ConfigurableResNet(depth=50)


def test_build_model_names():
    for arch in ARCHS:
        model = build_model(arch, num_classes=7)
        assert model.fc.out_features == 7
        assert isinstance(model.maxpool, torch.nn.Identity) == arch.endswith("-64")
    assert build_model("resnet10-64", num_classes=7)(torch.randn(1, 3, 16, 16)).shape == (1, 7)
    with pytest.raises(ValueError, match="unknown architecture 'vgg16'"):
        build_model("vgg16")


def test_pretrained_without_internet_fails_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    for build in (lambda: resnet18(pretrained=True), lambda: build_model("resnet18-64", pretrained=True)):
        with pytest.raises(DataError) as info:
            build()
        message = str(info.value)
        assert "no internet" in message and "resnet18-f37072fd.pth" in message
        assert str(tmp_path) in message and "pretrained=False" in message


def test_pretrained_weights_are_loaded_into_the_body(monkeypatch):
    fake = resnet18(num_classes=1000).state_dict()
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: fake)
    model = build_model("resnet18", pretrained=True)
    assert torch.equal(model.layer3[0].conv1.weight, fake["layer3.0.conv1.weight"])
    assert model.fc.out_features == 200
    small = build_model("resnet18-64", pretrained=True)
    assert torch.equal(small.layer1[0].conv2.weight, fake["layer1.0.conv2.weight"])
    assert small.conv1.weight.shape == (64, 3, 3, 3)
