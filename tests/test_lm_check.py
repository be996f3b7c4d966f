"""The Lab 05 exercise check accepts right answers and names the mistake in wrong ones."""

from __future__ import annotations

import pytest
import torch

from labkit.check import CheckFailed
from labkit.labs.lm.check import check_next_word_probs
from labkit.labs.lm.text import next_word_probs


def _top_k_mask(logits, top_k):
    if top_k is None:
        return logits
    kth = torch.topk(logits, top_k).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))


def test_right_answers_pass(capsys):
    check_next_word_probs(next_word_probs)

    def own(logits, temperature, top_k):
        return torch.softmax(_top_k_mask(logits / temperature, top_k), -1)

    check_next_word_probs(own)
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


def test_reference_properties():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    assert torch.allclose(next_word_probs(logits), torch.softmax(logits, -1))
    probs = next_word_probs(logits, top_k=2)
    assert probs[2:].sum() == 0 and probs.sum() == pytest.approx(1.0)
    cold, hot = next_word_probs(logits, 0.1), next_word_probs(logits, 10.0)
    assert cold[0] > 0.99 and hot.max() < 0.3
