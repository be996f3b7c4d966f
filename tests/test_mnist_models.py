"""ReportConvNet (the report's MyConvNet) and FastConvNet; the exercise checks accept right answers, explain wrong."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from labkit.check import CheckFailed
from labkit.labs.mnist.check import check_accuracy_function, check_myconvnet
from labkit.labs.mnist.model import FastConvNet, ReportConvNet, build_model, count_parameters


def test_myconvnet_builds_without_arguments_and_returns_logits():
    model = ReportConvNet().eval()
    out = model(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, 10)
    assert not torch.allclose(out.softmax(1).sum(1), out.sum(1))  # logits, not probabilities
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 3
    assert model.cnn(torch.randn(2, 1, 28, 28)).shape == (2, 128, 7, 7)
    # 640 + 128 + 73,856 + 256 + 4,918,032 + 76,930 + 990: the report's net, conv biases included
    assert count_parameters(model) == 5_070_832


def test_myconvnet_is_the_reports_net_so_their_state_dicts_load_into_each_other():
    """The course report's class (seed 004), verbatim but for the softmax at the end of its forward."""

    class ReportsNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.cnn = nn.Sequential(
                nn.Conv2d(1, 64, 3, 1, 1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2, 2, 0),
                nn.Conv2d(64, 128, 3, 1, 1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2, 2, 0))
            self.fc = nn.Sequential(nn.Linear(128 * 7 * 7, 16 * 7 * 7), nn.ReLU(), nn.Linear(16 * 7 * 7, 2 * 7 * 7),
                                    nn.ReLU(), nn.Linear(2 * 7 * 7, 10))

        def forward(self, x):
            if len(x.size()) == 3:
                x = x.unsqueeze(0)
            out = self.cnn(x)
            return self.fc(out.view(out.size()[0], -1))

    torch.manual_seed(0)
    reports, ours = ReportsNet().eval(), ReportConvNet().eval()
    ours.load_state_dict(reports.state_dict())
    reports.load_state_dict(ReportConvNet().state_dict())
    ours.load_state_dict(reports.state_dict())
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(ours(x), reports(x)) and ours(x[0]).shape == (1, 10)


@pytest.mark.parametrize("width", [8, 16])
def test_fastconvnet_shapes(width):
    model = FastConvNet(width).eval()
    assert model.features(torch.randn(3, 1, 28, 28)).shape == (3, 4 * width, 3, 3)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert count_parameters(FastConvNet()) < 40_000


def test_build_model_names_and_errors():
    assert isinstance(build_model("myconvnet"), ReportConvNet)
    assert build_model("fast", width=8).width == 8
    with pytest.raises(ValueError, match="choose one of fast, myconvnet"):
        build_model("resnet")
    with pytest.raises(ValueError, match="positive"):
        FastConvNet(0)


def test_check_myconvnet_accepts_the_course_model(capsys):
    check_myconvnet(ReportConvNet)
    assert "learns" in capsys.readouterr().out


class _NeedsArgs(ReportConvNet):
    def __init__(self, hidden):
        super().__init__()


class _SoftmaxAtTheEnd(ReportConvNet):
    def forward(self, x):
        return super().forward(x).softmax(dim=1)


class _WrongWidths(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(3136, 64), nn.ReLU(), nn.Linear(64, 32), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)


class _BadFlatten(ReportConvNet):
    def __init__(self):
        super().__init__()
        self.fc[0] = nn.Linear(128 * 14 * 14, 784)


class _NoConvBias(ReportConvNet):
    def __init__(self):
        super().__init__()
        self.cnn[0] = nn.Conv2d(1, 64, 3, padding=1, bias=False)
        self.cnn[4] = nn.Conv2d(64, 128, 3, padding=1, bias=False)


@pytest.mark.parametrize("model, hint", [
    (_NoConvBias, "biases"),
    (_NeedsArgs, "no arguments"),
    (_SoftmaxAtTheEnd, "probabilities"),
    (_WrongWidths, "64 then 128"),
    (_BadFlatten, "6272 inputs"),
])
def test_check_myconvnet_explains_mistakes(model, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_myconvnet(model)


def test_check_accuracy_function_accepts_argmax_and_tensor_results():
    check_accuracy_function(lambda logits, labels: (logits.argmax(1) == labels).float().mean().item())
    check_accuracy_function(lambda logits, labels: (logits.argmax(1) == labels).float().mean())


@pytest.mark.parametrize("fn, hint", [
    (lambda lo, la: (torch.multinomial(lo.softmax(1), 1).squeeze(1) == la).float().mean().item(), "random"),
    (lambda lo, la: (lo.argmax(1) == la).sum().item(), "more than 1"),
    (lambda lo, la: (lo.argmin(1) == la).float().mean().item(), "argmin"),
    (lambda lo, la: (lo.argmax(1) == la).float(), "return one number"),
    (lambda lo, la: "99%", "Python float"),
    (lambda lo, la: ((lo > 0.5).float().argmax(1) == la).float().mean().item(), "argmax accuracy is"),
])
def test_check_accuracy_function_explains_mistakes(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_accuracy_function(fn)


def test_labkit_export_hands_in_a_state_dict_that_a_fresh_myconvnet_loads(tmp_path):
    """The course's hand-in file: `ReportConvNet().load_state_dict(torch.load(path, weights_only=True))`."""
    from labkit.checkpoint import save_checkpoint
    from labkit.cli import main as cli_main

    torch.manual_seed(1)
    trained = ReportConvNet()
    checkpoint = save_checkpoint(tmp_path / "best.pt", model=trained, epoch=1)
    hand_in = tmp_path / "hw7_123456_name.pth"
    assert cli_main(["export", str(checkpoint), str(hand_in)]) == 0
    state = torch.load(hand_in, weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    fresh = ReportConvNet()
    fresh.load_state_dict(state)  # strict: every key, every shape
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(fresh.eval()(x), trained.eval()(x))


def test_max_pool_commutes_with_batchnorm_only_for_a_positive_scale():
    """FastConvNet's block pools before BN: the same as BN-then-pool only where BN's γ > 0 (its docstring)."""
    from torch import nn

    torch.manual_seed(0)
    bn = nn.BatchNorm2d(2).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, -2.0]))  # channel 0: increasing map, channel 1: decreasing
        bn.bias.copy_(torch.tensor([0.5, 0.5]))
    pool = nn.MaxPool2d(2)
    x = torch.randn(3, 2, 4, 4)
    with torch.no_grad():
        a, b = pool(bn(x)), bn(pool(x))
    assert torch.allclose(a[:, 0], b[:, 0])
    assert (a[:, 1] > b[:, 1]).all(), "γ < 0: pool(BN(x)) takes the window's largest BN value, BN(pool(x)) its smallest"
