"""Run-time settings read from the environment, in one place: smoke size, where data, caches and runs go,
the shared read-only datasets, and progress display."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from labkit.errors import UsageError, WriteError


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return value in {"1", "true", "yes", "on"} if value else default


def _path(value: str) -> Path:
    try:
        return Path(value).expanduser()
    except RuntimeError:  # `~` with no HOME and no passwd entry
        raise UsageError(f"cannot find the home directory to expand {value!r} (HOME is not set): set LABKIT_DATA "
                         "(and LABKIT_RUNS) to folders without `~`.") from None


def is_smoke() -> bool:
    """True when `LABKIT_SMOKE=1`: labs run at seconds-on-CPU size on tiny data."""
    return _flag("LABKIT_SMOKE")


def data_root() -> Path:
    """Where datasets are downloaded (`LABKIT_DATA`, default `~/.cache/labkit`)."""
    return _path(os.environ.get("LABKIT_DATA", "").strip() or "~/.cache/labkit")


def writable(folder: Path) -> bool:
    """`folder` (or, while it does not exist, its nearest existing parent) takes a new file: tried, not asked,
    and a folder without write bits counts as read-only even for root (a course's `chmod -R a-w` data)."""
    folder = Path(folder)
    while not folder.is_dir():
        if folder.exists() or folder == folder.parent:
            return False
        folder = folder.parent
    if not folder.stat().st_mode & 0o222:
        return False
    try:
        tempfile.TemporaryFile(dir=folder).close()
        return True
    except OSError:
        return False


def cache_dir() -> Path:
    """Where derived files (decoded-image caches, smoke-size generated data) go, never inside a dataset folder:
    `LABKIT_CACHE`, else `$LABKIT_DATA/cache` when writable, else `$XDG_CACHE_HOME/labkit` (`~/.cache/labkit`)."""
    if value := os.environ.get("LABKIT_CACHE", "").strip():
        return _path(value)
    data = data_root()
    if writable(data):
        return data / "cache"
    with contextlib.suppress(UsageError):  # no home: only LABKIT_CACHE is left
        user = _path(os.environ.get("XDG_CACHE_HOME", "").strip() or "~/.cache") / "labkit"
        if user != data and writable(user):
            return user
    raise WriteError(f"no writable folder for labkit's caches: LABKIT_DATA ({data}) is read-only and so is the "
                     "per-user cache ($XDG_CACHE_HOME/labkit, ~/.cache/labkit). Set LABKIT_CACHE to a writable folder.")


def runs_dir() -> Path:
    """Where runs write figures, checkpoints and logs (`LABKIT_RUNS`, default `./runs`)."""
    return _path(os.environ.get("LABKIT_RUNS", "").strip() or "runs")


def shared_datasets() -> Path | None:
    """The read-only real datasets beside the checkout (`../shared/datasets`; `LABKIT_SHARED_DATASETS`
    overrides it), or None (tests and benches that need real data then skip)."""
    value = os.environ.get("LABKIT_SHARED_DATASETS")
    candidates = [Path(value)] if value else []
    repo = Path(__file__).resolve().parent.parent
    candidates += [repo.parent / "shared" / "datasets", Path.cwd().parent / "shared" / "datasets"]
    return next((path for path in candidates if path.is_dir()), None)


def progress_enabled() -> bool:
    """Progress bars are on unless `LABKIT_PROGRESS=0` (tests set it)."""
    return _flag("LABKIT_PROGRESS", default=True)


_TERMINAL_COMMAND = False  # set by the `labkit` command while it runs


@contextlib.contextmanager
def running_command() -> Iterator[None]:
    """The `labkit` command runs inside it: every fit then shows its epochs (a bar in a terminal, a line per
    epoch in a log), also one whose caller passed progress=False. `LABKIT_PROGRESS=0` still silences them."""
    global _TERMINAL_COMMAND
    previous, _TERMINAL_COMMAND = _TERMINAL_COMMAND, True
    try:
        yield
    finally:
        _TERMINAL_COMMAND = previous


def terminal_command() -> bool:
    return _TERMINAL_COMMAND
