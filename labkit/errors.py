"""labkit's errors about what the user gave it: one class per thing the user does about it. Each message says
what was expected and how to fix it; `labkit` prints it as one `labkit: error: ...` line (exit 2 for a
`UsageError`, 1 for the others). Each keeps a standard base too (`ValueError`, `OSError`, ...) for `except`."""

from __future__ import annotations


class LabkitError(Exception):
    """Bad input with an explanation: a missing or malformed dataset, a mismatched checkpoint, ..."""


class UsageError(LabkitError, ValueError):
    """Options, a config, a command line or a lab source that cannot work: fix the command (exit code 2)."""


class DataError(LabkitError, FileNotFoundError, ValueError):
    """A dataset (or downloaded file) that is missing, corrupt or in the wrong format: get or fix the data."""


class CheckpointError(LabkitError, RuntimeError):
    """A checkpoint (or weights file) that cannot be read or does not fit the model: use another one."""


class WriteError(LabkitError, OSError):
    """An output that cannot be written (a folder in the way, no permission, a full disk): choose another place."""


class SetupError(LabkitError, RuntimeError):
    """This machine or launch cannot do what was asked (no such device, a distributed launch set up wrong)."""
