"""The exercise checks pass right answers and fail wrong ones with a specific, friendly hint."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from labkit.check import CheckFailed
from labkit.labs.function_fitting.check import check_close, check_function
from labkit.labs.mnist.check import (
    check_dtype,
    check_in_range,
    check_logits,
    check_loss_decreasing,
    check_model_output,
    check_shape,
)
from labkit.labs.tiny_imagenet.check import check_class_indices


def test_check_failed_is_an_assertion_error():
    """nbval and plain `pytest` treat a failed check as a failed assertion."""
    assert issubclass(CheckFailed, AssertionError)


# --- check_shape -------------------------------------------------------------------------------

def test_check_shape_passes_and_says_so(capsys):
    check_shape(torch.zeros(4, 10), (4, 10), what="logits")
    assert "logits has shape (4, 10)" in capsys.readouterr().out


def test_check_shape_none_matches_any_size():
    check_shape(torch.zeros(7, 3), (None, 3))


def test_check_shape_names_the_wrong_dimension():
    with pytest.raises(CheckFailed, match=r"Dimension 1 is 5, expected 10"):
        check_shape(torch.zeros(4, 5), (4, 10))


def test_check_shape_spots_a_missing_flatten():
    with pytest.raises(CheckFailed, match="number of dimensions differs.*flatten"):
        check_shape(torch.zeros(4, 8, 2, 2), (4, 32))


def test_check_shape_spots_permuted_dimensions():
    with pytest.raises(CheckFailed, match="different order.*permute"):
        check_shape(torch.zeros(2, 32, 32, 3), (2, 3, 32, 32), what="images")


def test_check_shape_rejects_none_and_non_tensors():
    with pytest.raises(CheckFailed, match="is None.*return"):
        check_shape(None, (1,))
    with pytest.raises(CheckFailed, match="should be a torch.Tensor, got list"):
        check_shape([1, 2], (2,))


def test_every_check_appends_the_lab_hint():
    with pytest.raises(CheckFailed, match=r"expected 3\. Re-read the MLP section\.$"):
        check_shape(torch.zeros(2), (3,), hint="Re-read the MLP section.")


# --- check_dtype -------------------------------------------------------------------------------

def test_check_dtype_float_targets_get_the_long_hint():
    check_dtype(torch.tensor([1, 2]), torch.long, what="targets")
    with pytest.raises(CheckFailed, match=r"torch.float32, expected torch.int64.*\.long\(\)"):
        check_dtype(torch.tensor([1.0, 2.0]), torch.long, what="targets")


def test_check_dtype_integer_images_get_the_float_hint():
    with pytest.raises(CheckFailed, match=r"\.float\(\)"):
        check_dtype(torch.zeros(2, 3, dtype=torch.uint8), torch.float32, what="images")


# --- check_logits ------------------------------------------------------------------------------

def test_check_logits_accepts_raw_scores():
    check_logits(torch.randn(8, 10, generator=torch.Generator().manual_seed(0)))


def test_check_logits_rejects_probabilities():
    logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(CheckFailed, match="probabilities.*CrossEntropyLoss"):
        check_logits(logits.softmax(-1))


def test_check_logits_rejects_log_probabilities():
    logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(CheckFailed, match="log-probabilities.*NLLLoss"):
        check_logits(logits.log_softmax(-1))


def test_check_logits_rejects_nan_and_wrong_rank():
    with pytest.raises(CheckFailed, match="NaN or infinite"):
        check_logits(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(CheckFailed, match=r"\(batch, classes\)"):
        check_logits(torch.zeros(10))


# --- check_loss_decreasing ---------------------------------------------------------------------

def test_check_loss_decreasing_passes_on_a_falling_curve(capsys):
    check_loss_decreasing([2.3, 1.5, 0.9])
    assert "fell from 2.3 to 0.9" in capsys.readouterr().out


def test_check_loss_decreasing_flat_curve_points_at_the_update_steps():
    with pytest.raises(CheckFailed, match="did not fall enough.*zero_grad"):
        check_loss_decreasing([1.0, 0.99, 0.98])


def test_check_loss_decreasing_rising_curve_blames_the_learning_rate():
    with pytest.raises(CheckFailed, match="went up.*learning rate"):
        check_loss_decreasing([1.0, 2.0, 4.0])


def test_check_loss_decreasing_nan_and_too_short():
    with pytest.raises(CheckFailed, match="NaN or infinite"):
        check_loss_decreasing([1.0, float("nan")])
    with pytest.raises(CheckFailed, match="at least two"):
        check_loss_decreasing([1.0])


# --- check_close / check_function / check_in_range -----------------------------------------------

def test_check_close_numbers_and_tensors():
    check_close(0.30000001, 0.3)
    check_close(torch.tensor([1.0, 2.0]), [1.0, 2.0])
    with pytest.raises(CheckFailed, match="is 0.5, expected 0.3"):
        check_close(0.5, 0.3)


def test_check_close_names_the_worst_entry():
    with pytest.raises(CheckFailed, match=r"1 of 3 entries are off, the worst at index \(2,\) \(9 instead of 3\)"):
        check_close(torch.tensor([1.0, 2.0, 9.0]), torch.tensor([1.0, 2.0, 3.0]))


def test_check_close_wrong_shape_none_and_nan():
    with pytest.raises(CheckFailed, match=r"shape \(2,\), expected \(\)"):
        check_close(torch.zeros(2), 0.0)
    with pytest.raises(CheckFailed, match="is None.*return"):
        check_close(None, 1.0)
    with pytest.raises(CheckFailed, match="NaN"):
        check_close(float("nan"), 1.0)
    with pytest.raises(CheckFailed, match="number or a tensor, got str"):
        check_close("1.0x", 1.0)


def _reference(x: torch.Tensor) -> torch.Tensor:
    return x**2 + 2 * torch.sin(x)


def test_check_function_accepts_an_equivalent_function(capsys):
    check_function(lambda x: x * x + 2 * torch.sin(x), _reference, torch.linspace(-3, 3, 11), what="f")
    assert "f matches the reference on 11 inputs" in capsys.readouterr().out


def test_check_function_reports_an_input_where_it_differs():
    with pytest.raises(CheckFailed, match=r"wrong at \d+ of 11 values, e\.g\. at x = -3 it gives"):
        check_function(lambda x: x**2 + torch.sin(x), _reference, torch.linspace(-3, 3, 11), what="f")


def test_check_function_wrong_shape_and_missing_return():
    x = torch.linspace(-1, 1, 5)
    with pytest.raises(CheckFailed, match=r"returns shape \(\) .*element-wise"):
        check_function(lambda x: (x**2).sum(), _reference, x)
    with pytest.raises(CheckFailed, match="is None.*return"):
        check_function(lambda x: None, _reference, x)
    with pytest.raises(CheckFailed, match="should be a function"):
        check_function(3.0, _reference, x)


def test_check_in_range_bounds():
    check_in_range(0.8, low=0.5, what="accuracy")
    check_in_range(torch.tensor(3.0), high=10.0)
    with pytest.raises(CheckFailed, match="accuracy is 0.1, expected at least 0.5. Train longer."):
        check_in_range(0.1, low=0.5, what="accuracy", hint="Train longer.")
    with pytest.raises(CheckFailed, match="expected at most 10"):
        check_in_range(11.0, high=10.0)
    with pytest.raises(CheckFailed, match="overflowed"):
        check_in_range(float("inf"), high=10.0)


# --- check_model_output ------------------------------------------------------------------------

class _Net(nn.Module):
    def __init__(self, use_second: bool = True, softmax: bool = False):
        super().__init__()
        self.first = nn.Linear(4, 8)
        self.second = nn.Linear(8, 3)
        self.use_second, self.softmax = use_second, softmax

    def forward(self, x):
        h = torch.relu(self.first(x))
        out = self.second(h) if self.use_second else h[:, :3]
        return out.softmax(-1) if self.softmax else out


def test_check_model_output_passes_and_leaves_no_gradients():
    torch.manual_seed(0)
    net = _Net().eval()
    out = check_model_output(net, torch.randn(5, 4), (5, 3))
    assert out.shape == (5, 3) and not out.requires_grad
    assert all(p.grad is None for p in net.parameters())
    assert not net.training  # mode restored


def test_check_model_output_finds_an_unused_layer():
    torch.manual_seed(0)
    with pytest.raises(CheckFailed, match=r"2 parameter\(s\).*second.weight.*not used in forward"):
        check_model_output(_Net(use_second=False), torch.randn(5, 4), (5, 3))


def test_check_model_output_catches_softmax_and_shape():
    torch.manual_seed(0)
    with pytest.raises(CheckFailed, match="probabilities"):
        check_model_output(_Net(softmax=True), torch.randn(5, 4), (5, 3))
    with pytest.raises(CheckFailed, match=r"Dimension 1 is 3, expected 10"):
        check_model_output(_Net(), torch.randn(5, 4), (5, 10))


def test_check_model_output_needs_parameters():
    with pytest.raises(CheckFailed, match="no trainable parameters"):
        check_model_output(nn.Identity(), torch.randn(2, 3), (2, 3), logits=False)


# --- check_class_indices -----------------------------------------------------------------------

def test_check_class_indices():
    reference = {"n01": 0, "n02": 1, "n03": 2}
    check_class_indices([2, 0], ["n03", "n01"], reference)
    with pytest.raises(CheckFailed, match=r"1 of 2 labels .*'n03': 1, training uses 2"):
        check_class_indices([1, 0], ["n03", "n01"], reference)
    with pytest.raises(CheckFailed, match="not in the training classes.*'n99'"):
        check_class_indices([0], ["n99"], reference)
    with pytest.raises(CheckFailed, match="1 labels for 2 items"):
        check_class_indices([0], ["n01", "n02"], reference)
