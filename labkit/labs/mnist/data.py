"""MNIST as torchvision's IDX files (`<root>/MNIST/raw/`, plain or .gz, md5-checked download) or the course's
tensor files (`train_data.pth`, ...), read into checked uint8 tensors with a seeded train/valid split; tiny
learnable synthetic MNIST in the IDX layout for smoke runs and tests.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from labkit import config
from labkit.errors import DataError
from labkit.files import atomic_write, fetch

MEAN = 0.1307
STD = 0.3081
IMAGE_SIZE = 28
NUM_CLASSES = 10
CLASSES = tuple(str(d) for d in range(NUM_CLASSES))

#: tried in order; the first is the mirror torchvision uses (yann.lecun.com often refuses)
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
#: md5 of the official .gz archives
GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
PTH_FILES = {
    "train": ("train_data.pth", "train_labels.pth"),
    "test": ("test_data.pth", "test_labels.pth"),
}
FETCH_COMMAND = "python data_prep/mnist.py --root {root}"

# IDX type codes (the third magic byte) -> dtype; MNIST uses 0x08 (unsigned byte) only
_IDX_DTYPES = {0x08: torch.uint8, 0x09: torch.int8, 0x0B: torch.int16, 0x0C: torch.int32,
               0x0D: torch.float32, 0x0E: torch.float64}



def raw_folder(root: str | os.PathLike) -> Path:
    """Where torchvision keeps the IDX files under `root`."""
    return Path(root) / "MNIST" / "raw"


def _open_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as handle:
                return handle.read()
        except (OSError, EOFError) as err:
            raise DataError(
                f"{path} is not a readable gzip file ({err}); delete it and download again.") from err
    return path.read_bytes()


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read one IDX file (`.gz` or not) into a tensor of its stored shape and type."""
    path = Path(path)
    data = _open_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(
            f"{path} is not an IDX file: it should start with bytes 00 00 <type> <ndim> "
            f"(e.g. 00 00 08 03 for images), found {data[:4].hex(' ') or 'an empty file'}."
        )
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated: its header promises {ndim} dimensions.")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    itemsize = torch.empty((), dtype=dtype).element_size()
    expected = header + itemsize * math.prod(shape)
    if len(data) != expected:
        raise DataError(
            f"{path} has {len(data):,} bytes but its header {tuple(shape)} needs {expected:,}: the file is "
            "truncated or corrupt; delete it and download again."
        )
    flat = torch.frombuffer(bytearray(data[header:]), dtype=dtype) if expected > header else torch.empty(0, dtype=dtype)
    if itemsize > 1:  # IDX is big-endian
        flat = flat.view(torch.uint8).view(-1, itemsize).flip(1).contiguous().view(dtype).view(-1)
    return flat.view(*shape)


def write_idx(path: str | os.PathLike, tensor: torch.Tensor) -> Path:
    """Write a uint8 tensor as an IDX file (gzip-compressed when `path` ends in .gz)."""
    if tensor.dtype != torch.uint8:
        raise TypeError(f"write_idx writes uint8 tensors (as MNIST stores them), got {tensor.dtype}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = bytes([0, 0, 0x08, tensor.dim()]) + struct.pack(f">{tensor.dim()}I", *tensor.shape)
    payload += tensor.contiguous().numpy().tobytes()
    if path.suffix == ".gz":
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
            handle.write(payload)  # mtime=0: the same data gives the same bytes
    else:
        path.write_bytes(payload)
    return path


def _find_idx(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def idx_available(root: str | os.PathLike) -> bool:
    """True when all four IDX files (plain or .gz) are under `root/MNIST/raw`."""
    folder = raw_folder(root)
    return all(_find_idx(folder, name) for names in IDX_FILES.values() for name in names)


def load_idx_split(root: str | os.PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N, 28, 28), labels int64 (N,)) of 'train' or 'test' from torchvision's layout."""
    if split not in IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}.")
    folder = raw_folder(root)
    paths = []
    for name in IDX_FILES[split]:
        found = _find_idx(folder, name)
        if found is None:
            raise DataError(_missing_message(root, [folder / name]))
        paths.append(found)
    images, labels = (read_idx(p) for p in paths)
    return validate(images, labels, source=f"{paths[0]} (labels {paths[1].name})")


def _missing_message(root: str | os.PathLike, missing: Sequence[Path]) -> str:
    expected = "\n  ".join(str(raw_folder(root) / n) for names in IDX_FILES.values() for n in names)
    return (
        f"MNIST not found: {', '.join(str(p) for p in missing)} is missing.\n"
        f"Expected torchvision's layout (each file plain or .gz):\n  {expected}\n"
        f"or the course's tensor files {', '.join(n for ns in PTH_FILES.values() for n in ns)} in {root}.\n"
        f"Fetch it with `{FETCH_COMMAND.format(root=root)}`, or call load_mnist(download=True)."
    )



def download_mnist(root: str | os.PathLike | None = None, mirrors: Sequence[str] = MIRRORS,
                   checksums: Mapping[str, str] = GZ_MD5) -> Path:
    """Download the four .gz archives into `root/MNIST/raw` (md5-checked, mirrors in order) and unpack them."""
    folder = raw_folder(root if root is not None else config.data_root())
    for archive, md5 in checksums.items():
        gz = fetch([mirror.rstrip("/") + "/" + archive for mirror in mirrors], folder, archive, md5=md5)
        plain = folder / archive[: -len(".gz")]
        if not plain.is_file():
            with gzip.open(gz, "rb") as src, atomic_write(plain) as dst:
                shutil.copyfileobj(src, dst)
    return folder



def pth_available(folder: str | os.PathLike) -> bool:
    """True when the four course tensor files are in `folder`."""
    return all((Path(folder) / n).is_file() for names in PTH_FILES.values() for n in names)


def save_pth(folder: str | os.PathLike, split: str, images: torch.Tensor, labels: torch.Tensor) -> list[Path]:
    """Write one split as the course's `<split>_data.pth` / `<split>_labels.pth` (checked first)."""
    images, labels = validate(images, labels, source=f"the {split} tensors")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in PTH_FILES[split]]
    for path, tensor in zip(paths, (images, labels)):
        torch.save(tensor.clone(), path)
    return paths


def load_pth_split(folder: str | os.PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N, 28, 28), labels int64 (N,)) from the course's tensor files."""
    if split not in PTH_FILES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}.")
    folder = Path(folder)
    loaded = []
    for name in PTH_FILES[split]:
        path = folder / name
        if not path.is_file():
            raise DataError(
                f"{path} is missing. The course's tensor files are "
                f"{', '.join(n for ns in PTH_FILES.values() for n in ns)}; "
                f"write them with `python data_prep/mnist.py --pth {folder}`."
            )
        try:
            value = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle errors, zip errors, forbidden globals
            raise DataError(f"{path} cannot be read as a saved tensor ({type(err).__name__}: {err}).") from err
        if not isinstance(value, torch.Tensor):
            raise DataError(
                f"{path} holds a {type(value).__name__}, expected one tensor saved with torch.save(tensor, path)."
            )
        loaded.append(value)
    return validate(loaded[0], loaded[1], source=f"{folder / PTH_FILES[split][0]} (labels {PTH_FILES[split][1]})")



def validate(images: torch.Tensor, labels: torch.Tensor, source: str = "MNIST") -> tuple[torch.Tensor, torch.Tensor]:
    """Check and normalise one split to uint8 images (N ≥ 1, 28, 28) and int64 labels in 0..9; (N, 1, 28, 28),
    finite float images in [0, 1] and any integer labels are converted; anything else is a DataError."""
    expected = "uint8 images of shape (N, 28, 28) (or float in [0, 1]) and integer labels of shape (N,)"
    if images.dim() == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.dim() != 3 or tuple(images.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{source}: images have shape {tuple(images.shape)}; expected {expected}.")
    if not len(images):
        raise DataError(f"{source} holds 0 images; expected {expected} with N ≥ 1 (an empty split would report "
                        "its accuracy as nan). Fix: re-create the file from the MNIST data.")
    if images.is_floating_point():
        bad = int((~torch.isfinite(images)).flatten(1).any(1).sum())
        if bad:
            raise DataError(
                f"{source}: {bad} of {len(images)} images hold NaN or infinite pixels; expected {expected}. "
                "Fix: re-create the file from the raw MNIST pixels (a NaN usually comes from dividing by a zero "
                "std or from an uninitialised tensor).")
        if images.min() < 0 or images.max() > 1:
            raise DataError(
                f"{source}: float images range over [{images.min():.3g}, {images.max():.3g}]; expected uint8 "
                "0..255 or float in [0, 1] (un-normalised: save the raw pixels, not (x - mean) / std)."
            )
        images = images.mul(255).round().to(torch.uint8)
    elif images.dtype != torch.uint8:
        raise DataError(f"{source}: images have dtype {images.dtype}; expected {expected}.")
    if labels.dim() != 1 or labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise DataError(
            f"{source}: labels have shape {tuple(labels.shape)} and dtype {labels.dtype}; expected {expected} "
            "(class indices, not one-hot vectors)."
        )
    if len(labels) != len(images):
        raise DataError(f"{source}: {len(images)} images but {len(labels)} labels; they must pair up.")
    labels = labels.long()
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise DataError(
            f"{source}: labels range over {int(labels.min())}..{int(labels.max())}; expected digits 0..9."
        )
    return images.contiguous(), labels.contiguous()



def split_indices(n: int, valid_fraction: float = 1 / 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, valid) index tensors of a seeded permutation of range(n); same seed, same split."""
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}.")
    n_valid = round(n * valid_fraction)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_valid:].sort().values, order[:n_valid].sort().values


@dataclass
class MNISTData:
    """uint8 images (N, 28, 28) and int64 labels for train / valid / test, plus where they came from."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """('train' | 'val' | 'test') -> (images, labels)."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', not {name!r}.")
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")

    def head(self, train: int | None = None, val: int | None = None, test: int | None = None) -> MNISTData:
        """The first `train` / `val` / `test` items of each split (None keeps a split whole): quick runs."""
        keep = {"train": train, "val": val, "test": test}
        parts = {}
        for name, n in keep.items():
            images, labels = self.split(name)
            parts[f"{name}_images"], parts[f"{name}_labels"] = images[:n], labels[:n]
        return MNISTData(**parts, source=f"{self.source}, first {keep}")

    def sizes(self) -> dict[str, int]:
        return {name: len(self.split(name)[1]) for name in ("train", "val", "test")}

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k} {v:,}" for k, v in self.sizes().items())
        return f"MNISTData({sizes}; from {self.source})"


def default_root() -> Path:
    """`LABKIT_DATA` when it holds MNIST; else the shared read-only copy when present; else `LABKIT_DATA`."""
    root = config.data_root()
    if idx_available(root) or pth_available(root) or pth_available(root / "MNIST"):
        return root
    shared = config.shared_datasets()
    if shared is not None and idx_available(shared):
        return shared
    return root


def load_splits(root: str | os.PathLike | None = None, download: bool = False,
                source: str = "auto"
                ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], str]:
    """((train images, labels), (test images, labels), description) from torchvision's root, MNIST/raw itself or
    a folder of the course's .pth files; `source` forces 'idx' or 'pth'."""
    if source not in ("auto", "idx", "pth"):
        raise ValueError(f"source must be 'auto', 'idx' or 'pth', not {source!r}.")
    root = Path(root) if root is not None else default_root()
    if source in ("auto", "pth"):
        found = [folder for folder in (root, root / "MNIST") if pth_available(folder)]
        if found or source == "pth":  # with none found, loading from root names the missing file
            folder = found[0] if found else root
            return load_pth_split(folder, "train"), load_pth_split(folder, "test"), f"{folder} (.pth)"
    if root.name == "raw" and root.parent.name == "MNIST" and not idx_available(root):
        root = root.parent.parent  # the raw folder itself was given
    if download and not idx_available(root):
        download_mnist(root)
    return load_idx_split(root, "train"), load_idx_split(root, "test"), f"{raw_folder(root)} (IDX)"


def load_mnist(root: str | os.PathLike | None = None, *, download: bool = False, valid_fraction: float = 1 / 6,
               seed: int = 0, source: str = "auto") -> MNISTData:
    """Load MNIST (IDX or .pth; default root `default_root()`), train split into train/valid by a seeded
    permutation; the test split is kept whole."""
    (images, labels), (test_images, test_labels), where = load_splits(root, download, source)
    train_idx, val_idx = split_indices(len(labels), valid_fraction, seed)
    return MNISTData(images[train_idx], labels[train_idx], images[val_idx], labels[val_idx],
                     test_images, test_labels, where)



# seven-segment strokes: (row0, col0, row1, col1) boxes inside the 28 x 28 canvas
_SEGMENTS = {
    "a": (5, 9, 7, 19), "b": (5, 17, 14, 19), "c": (13, 17, 23, 19), "d": (21, 9, 23, 19),
    "e": (13, 9, 23, 11), "f": (5, 9, 14, 11), "g": (13, 9, 15, 19),
}
_DIGIT_SEGMENTS = ("abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg")


def digit_templates() -> torch.Tensor:
    """Ten 28 x 28 seven-segment digit drawings in [0, 1], the classes of synthetic MNIST."""
    templates = torch.zeros(NUM_CLASSES, IMAGE_SIZE, IMAGE_SIZE)
    for digit, segments in enumerate(_DIGIT_SEGMENTS):
        for name in segments:
            r0, c0, r1, c1 = _SEGMENTS[name]
            templates[digit, r0:r1, c0:c1] = 1.0
    return templates


def synthetic_digits(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` noisy, shifted, slanted seven-segment digits (uint8 (n, 28, 28)) and their labels, balanced."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % NUM_CLASSES
    labels = labels[torch.randperm(n, generator=gen)]
    base = digit_templates()[labels]                                     # (n, 28, 28)
    # a random slant and shift per image, as one affine grid sample
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 + 0.1 * (torch.rand(n, generator=gen) - 0.5)
    theta[:, 0, 1] = 0.3 * (torch.rand(n, generator=gen) - 0.5)          # slant
    theta[:, :, 2] = 0.25 * (torch.rand(n, 2, generator=gen) - 0.5)      # shift, +-1.75 px
    grid = torch.nn.functional.affine_grid(theta, (n, 1, IMAGE_SIZE, IMAGE_SIZE), align_corners=False)
    images = torch.nn.functional.grid_sample(base[:, None], grid, align_corners=False)[:, 0]
    images = images * (0.6 + 0.4 * torch.rand(n, 1, 1, generator=gen))   # stroke intensity
    images = images + 0.15 * torch.randn(images.shape, generator=gen)    # noise
    return images.clamp(0, 1).mul(255).round().to(torch.uint8), labels


def write_synthetic_mnist(root: str | os.PathLike, n_train: int = 1200, n_test: int = 300, seed: int = 0) -> Path:
    """Write tiny learnable MNIST in torchvision's layout (IDX, plain and .gz) under `root/MNIST/raw`."""
    root = Path(root)
    folder = raw_folder(root)
    splits = {"train": synthetic_digits(n_train, seed), "test": synthetic_digits(n_test, seed + 1)}
    for split, tensors in splits.items():
        for name, tensor in zip(IDX_FILES[split], tensors):
            data = tensor.to(torch.uint8)
            write_idx(folder / name, data)
            write_idx(folder / f"{name}.gz", data)
    return root
