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
import hashlib
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from labkit import config
from labkit.labs.tiny_imagenet.data import FOLDER, MD5, URL, build_val_imagefolder, resolve_root


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, target: Path, md5: str | None) -> Path:
    """Download `url` to `target` (via a temp file) unless a file with the right md5 is there."""
    if target.exists() and (md5 is None or md5sum(target) == md5):
        print(f"{target} already downloaded")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading {url} -> {target}")
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as tmp:
        partial = Path(tmp.name)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                shutil.copyfileobj(response, tmp)
        except OSError as err:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"could not download {url}: {err}. Check the internet connection, or "
                               f"download the file by hand and put it at {target}.") from err
    if md5 is not None and (got := md5sum(partial)) != md5:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"checksum mismatch for {url}: md5 {got}, expected {md5}. The download is "
                           "corrupted or incomplete; run the script again.")
    partial.replace(target)
    return target


def extract(archive: Path, dest: Path) -> Path:
    """Extract the zip into `dest`, refusing members that would land outside it."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            pure = PurePosixPath(member)
            if pure.is_absolute() or ".." in pure.parts or ":" in member:
                raise RuntimeError(f"{archive} contains {member!r}, which points outside {dest}; not extracting.")
        print(f"extracting {archive} -> {dest}")
        zf.extractall(dest)
    return dest / FOLDER


def prepare(dest: Path, url: str = URL, md5: str | None = MD5) -> Path:
    """Download and extract once; later calls find the extracted folder and do nothing."""
    if (dest / FOLDER / "wnids.txt").is_file():
        print(f"{dest / FOLDER} is ready")
        return dest / FOLDER
    archive = download(url, dest / f"{FOLDER}.zip", md5)
    folder = extract(archive, dest)
    archive.unlink()
    return folder


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
