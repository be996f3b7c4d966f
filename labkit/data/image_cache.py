"""Decode image files once (JPEG decoding costs more than the augmentation) into one (N, 3, H, W) uint8
tensor, cached under `labkit.config.cache_dir()`, never beside the images. The key hashes the folder and
every file's relative path, size and mtime, so editing, adding or removing an image rebuilds it."""

from __future__ import annotations

import hashlib
import math
import pickle
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from labkit import config
from labkit.errors import DataError, WriteError
from labkit.files import atomic_write, remove_orphan_temp_files


def cache_key(root: Path, relpaths: Sequence[str], size: int) -> str:
    """Hash of the folder, the files' relative paths, sizes and mtimes, and the target size."""
    digest = hashlib.sha256()
    digest.update(f"{Path(root).resolve()}\n{size}\n".encode())
    for rel in relpaths:
        stat = (Path(root) / rel).stat()
        digest.update(f"{rel}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def decode_file(path: Path, size: int) -> torch.Tensor:
    """One image file as a (3, size, size) uint8 tensor (grayscale is expanded to RGB)."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            pixels = np.array(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as err:
        size = path.stat().st_size if path.exists() else 0
        raise DataError(
            f"could not read {path} ({size} bytes) as an image ({type(err).__name__}): the file is empty, truncated "
            "or not an image despite its name. Fix: replace it with the original (copy the dataset again if many "
            "files are damaged), or delete it.") from None
    return torch.from_numpy(pixels).permute(2, 0, 1)


def decode_all(root: Path, relpaths: Sequence[str], size: int, desc: str = "decoding images") -> torch.Tensor:
    """Decode every file (relative to `root`) into one (N, 3, size, size) uint8 tensor, with a progress bar
    (the full Tiny-ImageNet takes minutes on a CPU)."""
    from tqdm.auto import tqdm

    images = torch.empty((len(relpaths), 3, size, size), dtype=torch.uint8)
    bar = tqdm(relpaths, desc=desc, unit="img", disable=not config.progress_enabled() or len(relpaths) < 1000,
               mininterval=1.0, leave=False)
    for i, rel in enumerate(bar):
        images[i] = decode_file(Path(root) / rel, size)
    return images


def cached_images(root: Path, relpaths: Sequence[str], size: int, name: str,
                  cache_dir: Path | None = None, verbose: bool = True, *,
                  decoder: Callable[[Path, Sequence[str]], torch.Tensor] | None = None) -> torch.Tensor:
    """The decoded images of `relpaths` under `root`, from the cache or decoded now and cached. `name` prefixes
    the cache file ("tiny-imagenet-train"); `cache_dir` defaults to `labkit.config.cache_dir()`; `decoder(root,
    relpaths)`, when given, replaces `decode_all` and returns the (N, 3, size, size) uint8 tensor. The cache is
    written atomically (a full disk is a `WriteError`), mode 0o644 so one student's cache serves the next on a
    course server; temp files of killed builds are removed. It is read into memory, not memory-mapped (a cache
    replaced while a run uses it must not kill the process with SIGBUS); a damaged or stale one is rebuilt."""
    root = Path(root)
    key = cache_key(root, relpaths, size)
    shape = (len(relpaths), 3, size, size)
    folder = Path(cache_dir) if cache_dir is not None else config.cache_dir()
    path = folder / f"{name}-{key[:20]}.pt"
    if is_inside(path, root):
        raise WriteError(f"the image cache {path} would be inside the dataset folder {root}; "
                         "set LABKIT_CACHE (or LABKIT_DATA) to a folder outside the dataset.")
    damaged = None
    if path.exists():
        try:
            if path.stat().st_size < math.prod(shape):
                raise EOFError(f"{path.stat().st_size:,} bytes, shorter than its {math.prod(shape):,} bytes of images")
            stored = torch.load(path, weights_only=True)
            images = stored["images"]
            if stored.get("key") == key and tuple(images.shape) == shape and images.dtype == torch.uint8:
                return images
            damaged = "it does not match the images"
        except (OSError, RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as err:
            damaged = f"{type(err).__name__}: {str(err)[:120]}"
    if not config.writable(folder):
        if damaged:
            raise DataError(f"the image cache {path} is unreadable ({damaged}) and {folder} is read-only: delete the "
                            "file (or set LABKIT_CACHE to a writable folder) and run again.")
        raise WriteError(f"cannot write the decoded-image cache under {folder}: it is not writable. Set "
                         "LABKIT_CACHE to a writable folder (e.g. LABKIT_CACHE=~/.cache/labkit-cache), or "
                         "LABKIT_DATA to a writable copy of the data.")
    if damaged:
        print(f"the image cache {path} is unreadable ({damaged}); rebuilding it")
    remove_orphan_temp_files(folder)
    start = time.perf_counter()
    if decoder is None:
        images = decode_all(root, relpaths, size, desc=f"decoding {name} once into the cache")
    else:
        images = decoder(root, relpaths)
        if images.dtype != torch.uint8 or tuple(images.shape) != shape:
            raise ValueError(f"the decoder returned {images.dtype} {tuple(images.shape)}, expected uint8 {shape}")
    with atomic_write(path) as handle:
        torch.save({"key": key, "images": images}, handle)
    if verbose:
        print(f"decoded {len(relpaths):,} images in {time.perf_counter() - start:.1f} s -> cache {path}")
    return images


def is_inside(path: Path, folder: Path) -> bool:
    """True when `path` (after resolving links) lies in `folder`: labkit never writes into a dataset."""
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False
