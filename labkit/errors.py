"""The one base class of labkit's errors about what the user gave it (data, checkpoints, options).

Their messages say what was expected and how to fix it, so `labkit` on the command line prints
them without a traceback; in a notebook they are ordinary exceptions. Each keeps a standard base
too (`FileNotFoundError`, `ValueError`, `RuntimeError`), so `except ValueError` still catches them.
"""

from __future__ import annotations


class LabkitError(Exception):
    """Bad input with an explanation: a missing or malformed dataset, a mismatched checkpoint, ..."""
