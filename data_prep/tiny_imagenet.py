"""Get Tiny-ImageNet-200 ready: download the official zip (md5-checked), extract it, and
optionally build the reorganised val folder that `torchvision.datasets.ImageFolder` needs.

    python -m data_prep.tiny_imagenet                      # -> ~/.cache/labkit/tiny-imagenet-200
    python -m data_prep.tiny_imagenet --dest /data --val-folder /data/tiny-val
    python -m data_prep.tiny_imagenet --root /ro/tiny-imagenet-200 --val-folder /tmp/tiny-val --no-download

labkit's own loaders read the official layout in place and need no preparation
beyond the download. The val folder (`<wnid>/<file>` symlinks, or copies with
`--copy`) is only for tools built on `ImageFolder`; it is written outside the
dataset, so a read-only dataset works, and running the script again is harmless.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labkit import config
from labkit.files import fetch
from labkit.labs.tiny_imagenet.data import FOLDER, MD5, URL, build_val_imagefolder, resolve_root


def prepare(dest: Path, url: str = URL, md5: str | None = MD5) -> Path:
    """Download (md5-checked) and extract once (`labkit.files.fetch`); later calls find the folder and do nothing."""
    if (dest / FOLDER / "wnids.txt").is_file():
        print(f"{dest / FOLDER} is ready")
        return dest / FOLDER
    print(f"downloading {url} -> {dest}")
    fetch(url, dest, f"{FOLDER}.zip", md5=md5, extract=True)
    return dest / FOLDER


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=config.data_root(),
                        help="folder to download and extract into (default: LABKIT_DATA or ~/.cache/labkit)")
    parser.add_argument("--root", type=Path, default=None,
                        help="an existing dataset folder to use instead of downloading (may be read-only)")
    parser.add_argument("--no-download", action="store_true", help="never download; use --root or --dest as is")
    parser.add_argument("--val-folder", type=Path, default=None,
                        help="also build the ImageFolder val folder here (outside the dataset)")
    parser.add_argument("--copy", action="store_true", help="copy val images instead of symlinking them")
    parser.add_argument("--url", default=URL, help="download address (default: the official zip)")
    parser.add_argument("--md5", default=MD5, help="expected md5 of the zip ('' to skip the check)")
    args = parser.parse_args(argv)

    if args.root is not None or args.no_download:
        root = resolve_root(args.root if args.root is not None else args.dest)
    else:
        root = prepare(args.dest.expanduser(), args.url, args.md5 or None)
    if args.val_folder is not None:
        out = build_val_imagefolder(root, args.val_folder, copy=args.copy)
        print(f"val folder for ImageFolder: {out} (train: {root / 'train'})")
    print(f"Tiny-ImageNet ready at {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
