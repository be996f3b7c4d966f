"""The exercise checks pass right answers and fail wrong ones with a specific, friendly hint."""

from __future__ import annotations

import pytest
import torch

from labkit.check import CheckFailed
from labkit.labs.mnist.check import (
    check_logits,
    check_loss_decreasing,
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
