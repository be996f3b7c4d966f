"""ResNet for CIFAR (He et al. 2016, section 4.2): sizes, shapes and the option-A shortcut."""

from __future__ import annotations

import pytest
import torch

from labkit.labs.cifar10.model import (
    BasicBlock,
    PadShortcut,
    cifar_resnet,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet20_has_269722_parameters_with_option_a_shortcuts():
    model = resnet20()
    assert n_params(model) == 269_722  # 0.27 M as in the paper's Table 6
    # option A is parameter-free: no 1x1 projection convs anywhere
    assert not [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)]
    assert sum(isinstance(m, PadShortcut) for m in model.modules()) == 2


@pytest.mark.parametrize("factory, depth, params", [
    (resnet32, 32, 464_154), (resnet44, 44, 658_586), (resnet56, 56, 853_018),
])
def test_deeper_resnets_match_the_paper(factory, depth, params):
    model = factory()
    assert model.depth == depth
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 3 * (depth - 2) // 6
    assert n_params(model) == params  # 0.46 M, 0.66 M, 0.85 M in Table 6


def test_output_and_stage_shapes():
    model = resnet20().eval()
    x = torch.randn(4, 3, 32, 32)
    shapes = []
    hooks = [getattr(model, name).register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
             for name in ("layer1", "layer2", "layer3")]
    with torch.no_grad():
        out = model(x)
    for hook in hooks:
        hook.remove()
    assert out.shape == (4, 10)
    assert shapes == [(4, 16, 32, 32), (4, 32, 16, 16), (4, 64, 8, 8)]
    assert model.features(x).shape == (4, 64)


def test_pad_shortcut_subsamples_and_zero_pads_channels():
    x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).view(2, 16, 4, 4)
    out = PadShortcut(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 2, 2)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0


def test_bad_depth_is_a_clear_error():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        cifar_resnet(21)


def test_resnet_learns_a_tiny_batch():
    torch.manual_seed(0)
    model = cifar_resnet(8)
    x, y = torch.randn(10, 3, 16, 16), torch.arange(10)  # any size works: the pool is global
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(12):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
