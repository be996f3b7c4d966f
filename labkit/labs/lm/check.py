"""Checks for Lab 05's "Your turn" exercise: the next-word sampling distribution.

The student writes `next_word_probs(logits, temperature, top_k)`. `check_next_word_probs` feeds it crafted
scores whose right answer is known in closed form — logits = log(w) for small integer weights w, so
softmax(logits / T) is w^(1/T) normalised — and compares with those answers, written out below, and with the
outputs of the usual mistakes, which name the mistake. labkit has no implementation of the exercise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from labkit.check import CheckFailed, passed

ProbsFn = Callable[[torch.Tensor, float, "int | None"], torch.Tensor]

_IGNORED = "The temperature is ignored: divide the logits by it before the softmax."
_WRONG_WAY = "The temperature is applied the wrong way round: divide the logits by it (logits / temperature)."
_DIVIDES_PROBS = "The temperature divides the probabilities; it must divide the logits, before the softmax."
_NOT_MASKED = ("Words outside the top {k} still get probability: set their logits to -inf (e.g. with torch.topk "
               "and masked_fill) before the softmax.")
_NOT_RENORMALISED = ("After keeping the top-k words the probabilities no longer sum to 1: apply the softmax after "
                     "masking (or divide by the sum).")


def _norm(*weights: float) -> list[float]:
    total = sum(weights)
    return [w / total for w in weights]


@dataclass(frozen=True)
class _Case:
    weights: tuple[float, ...]  # the logits are log(weights)
    temperature: float
    top_k: int | None
    want: list[float]  # softmax(log(weights) / temperature) over the top_k, worked out by hand
    mistakes: dict[str, list[float]] = field(default_factory=dict)  # hint -> what that mistake returns

    @property
    def logits(self) -> torch.Tensor:
        return torch.tensor(self.weights, dtype=torch.float32).log()


_CASES = [
    _Case((8, 4, 2, 1, 0.5, 0.5), 1.0, None, [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.03125]),
    # T = 0.5 squares the weights, T = 2 takes their square root
    _Case((4, 2, 1, 1), 0.5, None, _norm(16, 4, 1, 1), {
        _IGNORED: _norm(4, 2, 1, 1),
        _WRONG_WAY: _norm(2, math.sqrt(2), 1, 1),
        _DIVIDES_PROBS: [p / 0.5 for p in _norm(4, 2, 1, 1)],
    }),
    _Case((16, 4, 1, 1), 2.0, None, _norm(4, 2, 1, 1), {
        _IGNORED: _norm(16, 4, 1, 1),
        _WRONG_WAY: _norm(256, 16, 1, 1),
        _DIVIDES_PROBS: [p / 2.0 for p in _norm(16, 4, 1, 1)],
    }),
    # top-2 of (4, 2, 1, 1): the last two words get nothing, the first two share all of it 2:1
    _Case((4, 2, 1, 1), 1.0, 2, [2 / 3, 1 / 3, 0.0, 0.0], {
        _NOT_MASKED.format(k=2): _norm(4, 2, 1, 1),
        _NOT_RENORMALISED: [0.5, 0.25, 0.0, 0.0],
    }),
    # the top 3 are not the first three words; T = 0.5 squares the kept weights 4, 2, 8
    _Case((1, 4, 2, 8, 1), 0.5, 3, [0.0, 16 / 84, 4 / 84, 64 / 84, 0.0], {
        _IGNORED: [0.0, 4 / 14, 2 / 14, 8 / 14, 0.0],
        _WRONG_WAY: [0.0, 2 / (2 + math.sqrt(2) + math.sqrt(8)), math.sqrt(2) / (2 + math.sqrt(2) + math.sqrt(8)),
                     math.sqrt(8) / (2 + math.sqrt(2) + math.sqrt(8)), 0.0],
        _NOT_MASKED.format(k=3): _norm(1, 16, 4, 64, 1),
        _NOT_RENORMALISED: [0.0, 16 / 86, 4 / 86, 64 / 86, 0.0],
    }),
]


def _close(got: torch.Tensor, values: list[float]) -> bool:
    return torch.allclose(got, torch.tensor(values), atol=1e-5)


def _diagnose(got: torch.Tensor, case: _Case) -> str:
    """The likeliest mistake that explains `got`."""
    for hint, output in case.mistakes.items():
        if _close(got, output):
            return hint
    if case.top_k is not None:
        outside = torch.tensor(case.want) == 0
        if got[outside].abs().max() > 1e-6:
            return _NOT_MASKED.format(k=case.top_k)
        if abs(float(got.sum()) - 1.0) > 1e-4:
            return _NOT_RENORMALISED
    return "The probabilities differ from softmax(logits / temperature) restricted to the top-k words."


def check_next_word_probs(fn: ProbsFn) -> None:
    """`fn(logits, temperature, top_k)` returns the right sampling distribution on crafted cases."""
    for case in _CASES:
        logits, temperature, top_k = case.logits, case.temperature, case.top_k
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
        got = got.detach().float().cpu()
        if (got < -1e-6).any():
            raise CheckFailed("Some probabilities are negative: return softmax(...), not the logits.")
        if abs(float(got.sum()) - 1.0) > 1e-4 and top_k is None and not case.mistakes:
            raise CheckFailed(
                f"The probabilities sum to {float(got.sum()):.4g}, not 1: apply torch.softmax over the vocabulary."
            )
        if not _close(got, case.want):
            shown = ", ".join(f"{w:g}" for w in case.weights)
            raise CheckFailed(f"logits = log([{shown}]), temperature={temperature}, top_k={top_k}: "
                              f"{_diagnose(got, case)}")
    passed("next_word_probs gives softmax(logits / temperature) over the top-k words")
