"""Prepare CIFAR-10 for Lab 02: download the official archive, or write tiny synthetic data.

    python data_prep/cifar10.py                 # download (163 MB, md5-checked) into $LABKIT_DATA
    python data_prep/cifar10.py --root ~/data   # somewhere else
    python data_prep/cifar10.py --synthetic     # tiny learnable stand-in in the same pickle layout

Either way the result is `<root>/cifar-10-batches-py/` as torchvision lays it out,
and the script ends by loading it and printing a summary.
"""

from __future__ import annotations

import argparse
import sys

from labkit import config
from labkit.data.prep_cli import dataset_parser
from labkit.errors import DataError
from labkit.labs.cifar10 import data as cifar


def build_parser() -> argparse.ArgumentParser:
    parser = dataset_parser(__doc__.splitlines()[0], "cifar-10-batches-py/", synthetic_sizes=(5000, 1000),
                            synthetic_what="data")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = args.root if args.root is not None else config.data_root()
    if args.synthetic:
        folder = cifar.write_synthetic_cifar10(root, args.n_train, args.n_test, args.seed)
        print(f"wrote synthetic CIFAR-10 to {folder}")
    else:
        folder = cifar.download_cifar10(root)
        print(f"CIFAR-10 is in {folder}")
    try:
        train, test = cifar.load_cifar10_splits(root)
    except DataError as err:
        print(err, file=sys.stderr)
        return 1
    counts = train.labels.bincount(minlength=10).tolist()
    print(f"train: {tuple(train.images.shape)} uint8, test: {tuple(test.images.shape)} uint8")
    print("images per class (train):", dict(zip(train.classes, counts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
