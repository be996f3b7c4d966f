"""CIFAR-10 in torchvision's on-disk layout, loaded once into uint8 tensors.

The data live in `<root>/cifar-10-batches-py/` (root defaults to `LABKIT_DATA`):
five training pickles `data_batch_1` ... `data_batch_5`, one `test_batch` and
`batches.meta`, exactly as `torchvision.datasets.CIFAR10` downloads them, so a
folder made by either tool works with the other. `write_synthetic_cifar10` writes
tiny learnable data in that same layout for smoke runs, tests and benchmarks.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from labkit import config
from labkit.data.augment import Compose, Normalize, RandomCrop
from labkit.data.tensor_loader import TensorLoader
from labkit.errors import LabkitError

FOLDER = "cifar-10-batches-py"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
#: file -> md5 of the official release (the same table torchvision checks)
TRAIN_FILES = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
}
TEST_FILES = {"test_batch": "40351d587109b95175f43aff81a1287e"}
META_FILE = "batches.meta"
META_MD5 = "5ff9c542aee3614f3951f8cda6e48888"
CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
#: per-channel mean and standard deviation of the 50,000 training images, pixels in [0, 1].
#: (The 0.2023/0.1994/0.2010 seen in many scripts is the mean per-image std, not the std.)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
IMAGE_SHAPE = (3, 32, 32)


class CIFAR10Error(LabkitError, RuntimeError):
    """The CIFAR-10 folder is missing, incomplete or holds a file that is not a CIFAR pickle."""


@dataclass(frozen=True)
class CIFAR10Split:
    """One split resident in memory: `images` uint8 (N, 3, 32, 32), `labels` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def cifar10_folder(root: str | Path | None = None) -> Path:
    """`<root>/cifar-10-batches-py`, root defaulting to `labkit.config.data_root()`."""
    return Path(root if root is not None else config.data_root()).expanduser() / FOLDER


def required_files(train: bool | None = None) -> list[str]:
    """The file names a complete folder holds (train, test or both when `train` is None)."""
    names: list[str] = []
    if train is None or train:
        names += list(TRAIN_FILES)
    if train is None or not train:
        names += list(TEST_FILES)
    return names + [META_FILE]


def download_cifar10(root: str | Path | None = None) -> Path:
    """Download and unpack the official archive (md5-checked) unless already present."""
    folder = cifar10_folder(root)
    if all((folder / name).is_file() for name in required_files()):
        return folder
    from torchvision.datasets.utils import download_and_extract_archive

    folder.parent.mkdir(parents=True, exist_ok=True)
    download_and_extract_archive(URL, str(folder.parent), filename=ARCHIVE, md5=ARCHIVE_MD5)
    return folder


def _missing_error(folder: Path, missing: list[str]) -> CIFAR10Error:
    return CIFAR10Error(
        f"CIFAR-10 not found: {folder} is missing {', '.join(missing)}.\n"
        f"A complete folder holds {', '.join(required_files())} (torchvision's layout).\n"
        f"Fix: download it with `python data_prep/cifar10.py` (or download=True / "
        f"`labkit run cifar10 --download`), which fetches {ARCHIVE} (163 MB, md5-checked) from "
        f"{URL} into {folder.parent}; or set LABKIT_DATA to the folder that contains "
        f"{FOLDER}/; or write tiny synthetic data with `python data_prep/cifar10.py --synthetic`."
    )


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a CIFAR file cannot run code on load."""

    _ALLOWED = frozenset({
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    })

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a CIFAR batch")
        return super().find_class(module, name)


def _read_pickle(path: Path) -> dict:
    """One CIFAR pickle as a dict with str keys; a clear error when it is not one."""
    try:
        with open(path, "rb") as handle:
            entry = _ArrayUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError, UnicodeDecodeError) as err:
        raise CIFAR10Error(
            f"{path} is not a readable CIFAR-10 pickle ({type(err).__name__}: {err}). The file is "
            f"probably truncated or corrupt: delete {path.parent} and download it again "
            "(`python data_prep/cifar10.py`)."
        ) from err
    if not isinstance(entry, dict):
        raise CIFAR10Error(f"{path} holds a {type(entry).__name__}, expected a CIFAR-10 dict.")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _batch_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    entry = _read_pickle(path)
    if "data" not in entry or "labels" not in entry:
        raise CIFAR10Error(
            f"{path} lacks the 'data' and 'labels' entries of a CIFAR-10 batch (keys: {sorted(entry)})."
        )
    data = np.asarray(entry["data"])
    labels = np.asarray(entry["labels"], dtype=np.int64)
    pixels = int(np.prod(IMAGE_SHAPE))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
        raise CIFAR10Error(
            f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, {pixels}) rows of "
            "1024 red, 1024 green, 1024 blue bytes. The file is corrupt: download it again."
        )
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise CIFAR10Error(
            f"{path}: expected {data.shape[0]} labels in 0..9, got shape {labels.shape}. "
            "The file is corrupt: download it again."
        )
    return data, labels


def _read_classes(folder: Path) -> tuple[str, ...]:
    meta = _read_pickle(folder / META_FILE)
    names = meta.get("label_names")
    if not isinstance(names, (list, tuple)) or len(names) != len(CLASSES):
        raise CIFAR10Error(
            f"{folder / META_FILE} should list 10 'label_names', got {names!r}."
        )
    return tuple(str(name) for name in names)


def load_cifar10(
    root: str | Path | None = None, train: bool = True, download: bool = False
) -> CIFAR10Split:
    """Read one split from the pickles into uint8 (N, 3, 32, 32) images and int64 labels.

    `download=True` fetches the official archive first when files are missing;
    with `download=False` a missing file raises `CIFAR10Error` naming the folder
    and the files it expects.
    """
    folder = cifar10_folder(root)
    names = required_files(train)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing and download:
        download_cifar10(root)
        missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise _missing_error(folder, missing)
    files = TRAIN_FILES if train else TEST_FILES
    arrays = [_batch_arrays(folder / name) for name in files]
    data = np.concatenate([a for a, _ in arrays]).reshape(-1, *IMAGE_SHAPE)
    labels = np.concatenate([b for _, b in arrays])
    return CIFAR10Split(torch.from_numpy(data), torch.from_numpy(labels), _read_classes(folder))


def load_cifar10_splits(
    root: str | Path | None = None, download: bool = False
) -> tuple[CIFAR10Split, CIFAR10Split]:
    """(train, test) splits: 50,000 and 10,000 images for the real data."""
    folder = cifar10_folder(root)
    missing = [name for name in required_files() if not (folder / name).is_file()]
    if missing and not download:
        raise _missing_error(folder, missing)  # name every missing file at once
    return load_cifar10(root, True, download), load_cifar10(root, False, download)


def augmentation() -> Compose:
    """The standard CIFAR augmentation on whole uint8 batches: a random crop of the image padded
    by 4 pixels (a shift of up to 4 pixels each way) and a random horizontal flip."""
    return Compose([RandomCrop(padding=4, flip=0.5)])  # crop and flip in one pass


def train_transform() -> Compose:
    """Augmentation, then floats in [0, 1] normalised per channel with the training set's mean/std."""
    return Compose([*augmentation().transforms, Normalize(MEAN, STD)])  # uint8 in, normalised float out


def eval_transform() -> Compose:
    """Normalisation only: test images are never augmented."""
    return Compose([Normalize(MEAN, STD)])  # uint8 in, normalised float out


def cifar10_loaders(
    train: CIFAR10Split,
    test: CIFAR10Split,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    seed: int = 0,
    eval_batch_size: int = 1000,
) -> tuple[TensorLoader, TensorLoader]:
    """(train, test) tensor-resident loaders on `device` (default: CPU).

    The uint8 images move to the device once (150 MB for the full training set); each
    batch is gathered, augmented and normalised there, with no worker processes.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    train_loader = TensorLoader(train.images, train.labels, batch_size=batch_size, shuffle=True,
                                device=device, transform=train_transform(), seed=seed)
    test_loader = TensorLoader(test.images, test.labels, batch_size=eval_batch_size, shuffle=False,
                               device=device, transform=eval_transform())
    return train_loader, test_loader


def synthetic_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Learnable 32x32 RGB images, uint8 (N, 3, 32, 32): a class colour and a class grating.

    Each class has its own tint and a stripe pattern (horizontal or vertical, 1-5
    cycles per image) with a random phase, blended with a random per-image colour
    and pixel noise: recognisable after random crops and flips, but not trivially.
    """
    n = labels.shape[0]
    palette = np.random.default_rng(1234).uniform(30, 225, size=(len(CLASSES), 3))
    coords = np.arange(32, dtype=np.float32) / 32.0
    cycles = (labels % 5 + 1).astype(np.float32)[:, None]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1)).astype(np.float32)
    wave = np.sin(2 * np.pi * cycles * coords[None, :] + phase)  # (N, 32)
    vertical = (labels // 5 == 1)[:, None, None]
    grating = np.where(vertical, wave[:, None, :], wave[:, :, None])  # (N, 32, 32)
    tint = (0.6 * palette[labels] + 0.4 * rng.uniform(30, 225, size=(n, 3))).astype(np.float32)
    images = rng.standard_normal(size=(n, *IMAGE_SHAPE), dtype=np.float32)
    images *= 25.0
    images += tint[:, :, None, None]
    images += 45.0 * grating[:, None, :, :]
    return np.clip(images, 0, 255, out=images).astype(np.uint8)


def _write_pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=4)  # 2 would inflate numpy bytes by ~50 %


def write_synthetic_cifar10(
    root: str | Path, n_train: int = 500, n_test: int = 200, seed: int = 0
) -> Path:
    """Write tiny learnable CIFAR-10 into `<root>/cifar-10-batches-py` in the real pickle layout.

    Training images are spread over data_batch_1..5, test images go to test_batch,
    and batches.meta lists the real class names; `torchvision.datasets.CIFAR10`
    reads the result too (given matching md5s). Classes are balanced.
    """
    if n_train < 5 or n_test < 1:
        raise ValueError(f"need n_train >= 5 (one per batch file) and n_test >= 1, got {n_train}, {n_test}")
    folder = cifar10_folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def balanced(n: int) -> np.ndarray:
        return rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)

    train_labels, test_labels = balanced(n_train), balanced(n_test)
    splits = np.array_split(np.arange(n_train), len(TRAIN_FILES))
    for number, (name, index) in enumerate(zip(TRAIN_FILES, splits), start=1):
        labels = train_labels[index]
        _write_pickle(folder / name, {
            "batch_label": f"training batch {number} of 5 (synthetic)",
            "labels": labels.tolist(),
            "data": synthetic_images(labels, rng).reshape(len(labels), -1),
            "filenames": [f"synthetic_train_{i:05d}.png" for i in index],
        })
    _write_pickle(folder / "test_batch", {
        "batch_label": "testing batch 1 of 1 (synthetic)",
        "labels": test_labels.tolist(),
        "data": synthetic_images(test_labels, rng).reshape(n_test, -1),
        "filenames": [f"synthetic_test_{i:05d}.png" for i in range(n_test)],
    })
    _write_pickle(folder / META_FILE, {
        "num_cases_per_batch": len(splits[0]),
        "label_names": list(CLASSES),
        "num_vis": int(np.prod(IMAGE_SHAPE)),
    })
    return folder
