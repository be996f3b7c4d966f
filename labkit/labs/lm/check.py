"""Checks for Lab 05's "Your turn" exercise: the next-word sampling distribution.

The student writes `next_word_probs(logits, temperature, top_k)`; `check_next_word_probs`
compares it with labkit's `labkit.labs.lm.text.next_word_probs` on a few cases and names the most
likely mistake when they differ.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from labkit.check import CheckFailed, passed
from labkit.labs.lm.text import next_word_probs as reference

ProbsFn = Callable[[torch.Tensor, float, "int | None"], torch.Tensor]


def _diagnose(got: torch.Tensor, logits: torch.Tensor, temperature: float, top_k: int | None) -> str:
    """The likeliest mistake that explains `got`."""
    if top_k is not None:
        kept = torch.topk(logits, top_k).indices
        outside = torch.ones_like(got, dtype=torch.bool)
        outside[kept] = False
        if got[outside].abs().max() > 1e-6:
            return (f"Words outside the top {top_k} still get probability: set their logits to -inf "
                    "(e.g. with torch.topk and masked_fill) before the softmax.")
        if abs(float(got.sum()) - 1.0) > 1e-4:
            return ("After keeping the top-k words the probabilities no longer sum to 1: apply the softmax "
                    "after masking (or divide by the sum).")
    if temperature != 1.0:
        masked = reference(logits, 1.0, top_k).clamp_min(1e-30).log()
        if torch.allclose(got, torch.softmax(masked, -1), atol=1e-5):
            return "The temperature is ignored: divide the logits by it before the softmax."
        if torch.allclose(got, torch.softmax(masked * temperature, -1), atol=1e-5):
            return "The temperature is applied the wrong way round: divide the logits by it (logits / temperature)."
        if torch.allclose(got, torch.softmax(masked, -1) / temperature, atol=1e-5):
            return "The temperature divides the probabilities; it must divide the logits, before the softmax."
    return "The probabilities differ from softmax(logits / temperature) restricted to the top-k words."


def check_next_word_probs(fn: ProbsFn) -> None:
    """`fn(logits, temperature, top_k)` returns the right sampling distribution."""
    generator = torch.Generator().manual_seed(0)
    cases = [(1.0, None), (0.5, None), (2.0, None), (1.0, 3), (0.7, 5)]
    for temperature, top_k in cases:
        logits = torch.randn(12, generator=generator) * 2
        try:
            got = fn(logits.clone(), temperature, top_k)
        except NotImplementedError:  # the unsolved exercise stub: let the student see it as it is
            raise
        except Exception as err:  # show the student's own error with the case that caused it
            raise CheckFailed(
                f"next_word_probs raised {type(err).__name__}: {err} "
                f"(temperature={temperature}, top_k={top_k})."
            ) from err
        if not isinstance(got, torch.Tensor) or got.shape != logits.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise CheckFailed(f"next_word_probs should return a tensor of shape {tuple(logits.shape)}, got {shape}.")
        got = got.detach().float()
        if (got < -1e-6).any():
            raise CheckFailed("Some probabilities are negative: return softmax(...), not the logits.")
        if abs(float(got.sum()) - 1.0) > 1e-4 and top_k is None:
            raise CheckFailed(
                f"The probabilities sum to {float(got.sum()):.4g}, not 1: apply torch.softmax over the vocabulary."
            )
        want = reference(logits, temperature, top_k)
        if not torch.allclose(got, want, atol=1e-5):
            raise CheckFailed(f"temperature={temperature}, top_k={top_k}: {_diagnose(got, logits, temperature, top_k)}")
    passed("next_word_probs gives softmax(logits / temperature) over the top-k words")
