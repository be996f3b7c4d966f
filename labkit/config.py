"""Run-time settings read from the environment, in one place: smoke size, where data, caches and runs go,
the shared read-only datasets, and progress display."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in _TRUE


def is_smoke() -> bool:
    """True when `LABKIT_SMOKE=1`: labs run at seconds-on-CPU size on tiny data."""
    return _flag("LABKIT_SMOKE")


def data_root() -> Path:
    """Where datasets are downloaded and caches are kept (`LABKIT_DATA`, default `~/.cache/labkit`)."""
    value = os.environ.get("LABKIT_DATA")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "labkit"


def cache_dir() -> Path:
    """Where derived files (decoded-image caches) go, never inside a dataset folder: `LABKIT_CACHE` (e.g. a
    writable folder beside a course server's read-only `LABKIT_DATA`), else `$LABKIT_DATA/cache`."""
    value = os.environ.get("LABKIT_CACHE", "").strip()
    return Path(value).expanduser() if value else data_root() / "cache"


def runs_dir() -> Path:
    """Where runs write figures, checkpoints and logs (`LABKIT_RUNS`, default `./runs`)."""
    return Path(os.environ.get("LABKIT_RUNS", "runs")).expanduser()


def shared_datasets() -> Path | None:
    """The read-only real datasets beside the checkout (`../shared/datasets`; `LABKIT_SHARED_DATASETS`
    overrides it), or None (tests and benches that need real data then skip)."""
    value = os.environ.get("LABKIT_SHARED_DATASETS")
    candidates = [Path(value)] if value else []
    repo = Path(__file__).resolve().parent.parent
    candidates += [repo.parent / "shared" / "datasets", Path.cwd().parent / "shared" / "datasets"]
    for path in candidates:
        if path.is_dir():
            return path
    return None


def progress_enabled() -> bool:
    """Progress bars are on unless `LABKIT_PROGRESS=0` (tests set it)."""
    return _flag("LABKIT_PROGRESS", default=True)


#: set by the `labkit` command while it runs (`terminal_command()`)
_TERMINAL_COMMAND = False


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
