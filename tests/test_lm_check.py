"""The Lab 05 exercise check accepts right answers and names the mistake in wrong ones."""

from __future__ import annotations

import pytest
import torch

import labkit.labs.lm.text
from labkit.check import CheckFailed
from labkit.labs.lm.check import check_next_word_probs


def _top_k_mask(logits, top_k):
    if top_k is None:
        return logits
    kth = torch.topk(logits, top_k).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))


def test_right_answers_pass(capsys):
    def own(logits, temperature, top_k):
        return torch.softmax(_top_k_mask(logits / temperature, top_k), -1)

    check_next_word_probs(own)

    def on_float64(logits, temperature, top_k):  # another dtype, top-k by sorting: still right
        scaled = logits.double() / temperature
        if top_k is not None:
            scaled[scaled.argsort(descending=True)[top_k:]] = float("-inf")
        return torch.softmax(scaled, -1)

    check_next_word_probs(on_float64)
    assert "✔" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda l, t, k: torch.softmax(_top_k_mask(l, k), -1), "temperature is ignored"),
    (lambda l, t, k: torch.softmax(_top_k_mask(l * t, k), -1), "wrong way round"),
    (lambda l, t, k: torch.softmax(l / t, -1), "outside the top"),
    (lambda l, t, k: _top_k_mask(l / t, k), "negative|sum to"),
    (lambda l, t, k: torch.softmax(l / t, -1) * (_top_k_mask(l, k) > -1e30), "no longer sum to 1"),
    (lambda l, t, k: torch.softmax(l / t, -1)[:5], "shape"),
])
def test_wrong_answers_get_a_specific_hint(wrong, hint):
    with pytest.raises(CheckFailed, match=hint):
        check_next_word_probs(wrong)


def test_wrong_temperature_placements_are_named():
    def divides_probs(logits, temperature, top_k):
        return torch.softmax(_top_k_mask(logits, top_k), -1) / temperature

    with pytest.raises(CheckFailed, match="divides the probabilities"):
        check_next_word_probs(divides_probs)


def test_labkit_ships_no_solution():
    """The exercise's answer exists only in the instructor notebook, not in the installed package."""
    from labkit.labs import lm
    from labkit.labs.lm import check

    for module in (labkit.labs.lm.text, lm, check):
        assert not hasattr(module, "next_word_probs")
