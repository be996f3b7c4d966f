"""The base of the checks of the "Your turn" cells (each lab's own are in `labkit/labs/<lab>/check.py`): a
check raises `CheckFailed` (an AssertionError: nbval and pytest count it as a failure) saying what was expected,
what was found and what to try, and prints a short confirmation on success."""

from __future__ import annotations

from typing import Any

import torch


class CheckFailed(AssertionError):
    """An exercise answer is not right yet; the message says why and what to try."""


def passed(what: str) -> None:
    print(f"✔ {what}")


def fail(message: str, hint: str | None = None) -> CheckFailed:
    """The exception to raise: `message`, then the lab-specific `hint` if any."""
    return CheckFailed(f"{message} {hint}" if hint else message)


def require(value: Any, what: str, hint: str | None = None) -> Any:
    """`value`, unless it is None (a cell or function that forgot to `return`)."""
    if value is None:
        raise fail(f"{what} is None: did the cell or function forget to `return` its result?", hint)
    return value


def require_tensor(value: Any, what: str, hint: str | None = None) -> torch.Tensor:
    if not isinstance(require(value, what, hint), torch.Tensor):
        raise fail(f"{what} should be a torch.Tensor, got {type(value).__name__}.", hint)
    return value
