"""Prepare MNIST for Lab 03: download the IDX archives and write the course's .pth tensor files.

    python data_prep/mnist.py                    # into $LABKIT_DATA (default ~/.cache/labkit)
    python data_prep/mnist.py --root ~/data      # somewhere else
    python data_prep/mnist.py --pth ~/course     # put the four .pth files there instead of <root>/MNIST
    python data_prep/mnist.py --synthetic        # tiny learnable stand-in, same layout, no network

The result is torchvision's `<root>/MNIST/raw/*-ubyte` (downloaded md5-checked from torchvision's
mirrors by `labkit.labs.mnist.data.download_mnist`) plus `train_data.pth`, `train_labels.pth`,
`test_data.pth`, `test_labels.pth` (uint8 images (N, 28, 28), int64 labels (N,)). labkit reads either
form; the script ends by loading both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labkit import config
from labkit.data.prep_cli import dataset_parser
from labkit.errors import LabkitError
from labkit.labs.mnist import data as mnist


def build_parser() -> argparse.ArgumentParser:
    parser = dataset_parser(__doc__.splitlines()[0], "MNIST/raw", synthetic_sizes=(1200, 300), synthetic_what="MNIST")
    parser.add_argument("--pth", type=Path, default=None,
                        help="folder for the course's .pth tensor files (default: <root>/MNIST)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = args.root if args.root is not None else config.data_root()
    pth_folder = args.pth if args.pth is not None else root / "MNIST"
    try:
        if args.synthetic:
            mnist.write_synthetic_mnist(root, args.n_train, args.n_test, args.seed)
            print(f"wrote synthetic MNIST to {mnist.raw_folder(root)}")
        else:
            mnist.download_mnist(root)
            print(f"MNIST is in {mnist.raw_folder(root)}")
        for split in ("train", "test"):
            images, labels = mnist.load_idx_split(root, split)
            paths = mnist.save_pth(pth_folder, split, images, labels)
            print(f"{split}: {tuple(images.shape)} uint8, {tuple(labels.shape)} int64 -> "
                  + ", ".join(str(p) for p in paths))
        from_idx = mnist.load_mnist(root, source="idx")
        from_pth = mnist.load_mnist(pth_folder, source="pth")
    except LabkitError as err:
        print(err, file=sys.stderr)
        return 1
    assert from_idx.sizes() == from_pth.sizes()
    print(f"loaded back: {from_idx}")
    print("images per digit (train split):", from_idx.train_labels.bincount(minlength=10).tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main())
