"""The options every `data_prep/<dataset>.py` script shares, defined once."""

from __future__ import annotations

import argparse
from pathlib import Path


def dataset_parser(description: str, holds: str, *, synthetic_sizes: tuple[int, int] | None = None,
                   synthetic_what: str = "data") -> argparse.ArgumentParser:
    """A parser with `--root` (the folder that will hold `holds`, default $LABKIT_DATA), `--synthetic`,
    `--seed` and, given `synthetic_sizes=(train, test)`, `--n-train` / `--n-test`; scripts add their own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", type=Path, default=None,
                        help=f"folder that will hold {holds} (default: $LABKIT_DATA)")
    parser.add_argument("--synthetic", action="store_true",
                        help=f"write synthetic {synthetic_what} instead of downloading (offline smoke runs)")
    if synthetic_sizes is not None:
        parser.add_argument("--n-train", type=int, default=synthetic_sizes[0], help="synthetic training images")
        parser.add_argument("--n-test", type=int, default=synthetic_sizes[1], help="synthetic test images")
    parser.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    return parser
