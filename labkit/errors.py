"""labkit's errors about what the user gave it: one base class and one class per thing the user does about it.

Their messages say what was expected and how to fix it, so `labkit` on the command line prints them as one
`labkit: error: ...` line without a traceback (exit code 2 for a `UsageError`, 1 for the others); in a notebook
they are ordinary exceptions. Each keeps a standard base too (`ValueError`, `FileNotFoundError`, `RuntimeError`,
`OSError`), so `except ValueError` and the like still catch them.
"""

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
    """This machine or launch cannot do what was asked (a device that is not here, a distributed launch set up
    wrong): change the device or the launch."""
