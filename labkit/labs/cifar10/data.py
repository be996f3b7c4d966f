"""CIFAR-10 as torchvision's pickles (`<root>/cifar-10-batches-py/`) or as an image folder
(`ROOT/train/<class>/*.jpg`, maybe `ROOT/test/...`; without a test split 5,000 training images are held
out as "holdout"), loaded once into uint8 tensors; tiny learnable synthetic data in either layout.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from labkit import config
from labkit.data.augment import Compose, Normalize, RandomCrop
from labkit.data.image_cache import cached_images, is_inside
from labkit.data.tensor_loader import TensorLoader
from labkit.errors import DataError
from labkit.files import fetch

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


@dataclass(frozen=True)
class CIFAR10Split:
    """One split in memory: uint8 images (N, 3, 32, 32), int64 labels; `name` "train", "test" or "holdout",
    `description` its readable form (e.g. "hold-out (5,000 of train)", default `name`)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str = ""
    description: str = ""
    #: for an image folder: each row's file, relative to the dataset folder ("train/cat/0001.jpg")
    files: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not self.description:
            object.__setattr__(self, "description", self.name)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def cifar10_folder(root: str | Path | None = None) -> Path:
    return Path(root if root is not None else config.data_root()).expanduser() / FOLDER


def required_files(train: bool | None = None) -> list[str]:
    """The files of a complete folder (train, test or, when None, both)."""
    names: list[str] = []
    if train is None or train:
        names += list(TRAIN_FILES)
    if train is None or not train:
        names += list(TEST_FILES)
    return names + [META_FILE]


def download_cifar10(root: str | Path | None = None) -> Path:
    """Download and unpack the official archive (md5-checked) unless already present."""
    folder = cifar10_folder(root)
    if not all((folder / name).is_file() for name in required_files()):
        fetch(URL, folder.parent, ARCHIVE, md5=ARCHIVE_MD5, extract=True)
    return folder


def _missing_error(folder: Path, missing: list[str]) -> DataError:
    return DataError(
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
        raise DataError(
            f"{path} is not a readable CIFAR-10 pickle ({type(err).__name__}: {err}). The file is "
            f"probably truncated or corrupt: delete {path.parent} and download it again "
            "(`python data_prep/cifar10.py`)."
        ) from err
    if not isinstance(entry, dict):
        raise DataError(f"{path} holds a {type(entry).__name__}, expected a CIFAR-10 dict.")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _batch_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    entry = _read_pickle(path)
    if "data" not in entry or "labels" not in entry:
        raise DataError(
            f"{path} lacks the 'data' and 'labels' entries of a CIFAR-10 batch (keys: {sorted(entry)})."
        )
    data = np.asarray(entry["data"])
    labels = np.asarray(entry["labels"], dtype=np.int64)
    pixels = int(np.prod(IMAGE_SHAPE))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
        raise DataError(
            f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, {pixels}) rows of "
            "1024 red, 1024 green, 1024 blue bytes. The file is corrupt: download it again."
        )
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(
            f"{path}: expected {data.shape[0]} labels in 0..9, got shape {labels.shape}. "
            "The file is corrupt: download it again."
        )
    return data, labels


def _read_classes(folder: Path) -> tuple[str, ...]:
    meta = _read_pickle(folder / META_FILE)
    names = meta.get("label_names")
    if not isinstance(names, (list, tuple)) or len(names) != len(CLASSES):
        raise DataError(
            f"{folder / META_FILE} should list 10 'label_names', got {names!r}."
        )
    return tuple(str(name) for name in names)


def load_cifar10(
    root: str | Path | None = None, train: bool = True, download: bool = False
) -> CIFAR10Split:
    """One split from the pickles (`download=True` fetches missing files; else a `DataError` names them)."""
    folder = cifar10_folder(root)
    names = required_files(train)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing and download:
        download_cifar10(root)
        missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise _missing_error(folder, missing)
    return _read_pickle_split(folder, train)


def _read_pickle_split(folder: Path, train: bool) -> CIFAR10Split:
    """One split from a complete pickle folder (whatever it is called)."""
    files = TRAIN_FILES if train else TEST_FILES
    arrays = [_batch_arrays(folder / name) for name in files]
    data = np.concatenate([a for a, _ in arrays]).reshape(-1, *IMAGE_SHAPE)
    labels = np.concatenate([b for _, b in arrays])
    return CIFAR10Split(torch.from_numpy(data), torch.from_numpy(labels), _read_classes(folder),
                        name="train" if train else "test")


def load_cifar10_splits(
    root: str | Path | None = None, download: bool = False
) -> tuple[CIFAR10Split, CIFAR10Split]:
    """(train, test) splits: 50,000 and 10,000 images for the real data."""
    folder = cifar10_folder(root)
    missing = [name for name in required_files() if not (folder / name).is_file()]
    if missing and not download:
        raise _missing_error(folder, missing)  # name every missing file at once
    return load_cifar10(root, True, download), load_cifar10(root, False, download)


# --- image folders: `<class>` is one of CLASSES (its label is the index), every image 32×32; hidden entries
# (.DS_Store) are skipped, anything else that is not an image is an error; decoded images are cached under
# `config.cache_dir()`, never in the folder.

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
FOLDER_SPLITS = ("train", "test")
#: images held out of train for evaluation when an image folder has no test split
HOLDOUT = 5_000
_SHOW = 10  # problem files named in one message
_FOLDER_LAYOUT = (
    "an image folder: train/<class>/*.jpg|*.png (and optionally test/<class>/...) with exactly "
    f"the ten class folders {', '.join(CLASSES)}, each holding that class's 32×32 images"
)
_PICKLE_LAYOUT = (
    f"the official pickles: {FOLDER}/ with {', '.join(required_files())} (torchvision's "
    "layout; `python data_prep/cifar10.py` or download=True fetches it)"
)


def _listing(names: list[str], show: int = _SHOW) -> str:
    if len(names) <= show:
        return ", ".join(names)
    return f"{', '.join(names[:show])} and {len(names) - show:,} more"


def _visible(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as entries:
        return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _refuse_outside_links(root: Path, relpaths: list[str]) -> None:
    if relpaths:
        targets = [f"{rel} -> {(root / rel).resolve()}" for rel in relpaths]
        raise DataError(
            f"{len(relpaths)} symbolic link(s) in the CIFAR-10 folder {root} point outside it: "
            f"{_listing(targets)}. labkit reads only files inside the dataset folder, so a link "
            "cannot pull in (or expose) files from elsewhere. Fix: replace each link with the "
            "file (or folder) it points to, or pass the folder that really holds the images."
        )


def image_folder_samples(root: str | Path, split: str = "train") -> list[tuple[str, int]]:
    """(path relative to `root`, label) of every image in `root/split/<class>/`, classes in CLASSES order and
    files in name order; a missing or unexpected entry, an empty class or a link outside `root` is a DataError."""
    root = Path(root)
    if split not in FOLDER_SPLITS:
        raise ValueError(f"split must be one of {FOLDER_SPLITS}, got {split!r}")
    folder = root / split
    if not folder.is_dir():
        raise DataError(
            f"the {split} split is missing: {folder} is not a folder. Expected {_FOLDER_LAYOUT}.")
    if not is_inside(folder, root):
        _refuse_outside_links(root, [split])
    entries = _visible(folder)
    _refuse_outside_links(root, [f"{split}/{e.name}" for e in entries
                                 if e.is_symlink() and not is_inside(Path(e.path), root)])
    found = {e.name for e in entries if e.is_dir()}
    missing = [name for name in CLASSES if name not in found]
    extra = sorted(found - set(CLASSES))
    strays = [e.name for e in entries if not e.is_dir()]
    if missing or extra or strays:
        problems = [f"missing class folder(s) {_listing(missing)}" if missing else "",
                    f"unexpected folder(s) {_listing(extra)}" if extra else "",
                    f"unexpected file(s) {_listing(strays)}" if strays else ""]
        raise DataError(
            f"{folder} does not hold the ten CIFAR-10 class folders: "
            f"{'; '.join(p for p in problems if p)}. Expected exactly {', '.join(CLASSES)} "
            "(lower-case, the names CIFAR-10 uses; the label is the index in that list) and "
            f"nothing else. Fix: add or rename the class folders and move anything else out of "
            f"{folder}."
        )
    samples: list[tuple[str, int]] = []
    outside: list[str] = []
    not_images: list[str] = []
    empty: list[str] = []
    for label, name in enumerate(CLASSES):
        before = len(samples)
        for entry in _visible(folder / name):
            rel = f"{split}/{name}/{entry.name}"
            if entry.is_symlink() and not is_inside(Path(entry.path), root):
                outside.append(rel)
            elif entry.is_dir():
                not_images.append(f"{rel}/ (a folder: class folders hold image files only)")
            elif not entry.is_file():
                not_images.append(f"{rel} (a broken link or not a regular file)")
            elif os.path.splitext(entry.name)[1].lower() not in IMAGE_SUFFIXES:
                not_images.append(f"{rel} (not an image: the name does not end in "
                                  f"{', '.join(IMAGE_SUFFIXES)})")
            else:
                samples.append((rel, label))
        if len(samples) == before:
            empty.append(name)
    _refuse_outside_links(root, outside)
    if not_images:
        raise DataError(
            f"{len(not_images)} entr{'y' if len(not_images) == 1 else 'ies'} in the class "
            f"folders of {folder} {'is' if len(not_images) == 1 else 'are'} not image files: "
            f"{_listing(not_images)}. Fix: move them out of the dataset folder.")
    if empty:
        raise DataError(
            f"the class folder(s) {_listing(empty)} in {folder} hold no images. Every class "
            f"needs its .jpg/.png images: is the copy complete?")
    return samples


_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def _mode_kind(mode: str) -> str:
    kinds = {"P": "palette", "PA": "palette", "RGBA": "RGBA, alpha dropped", "RGBa": "RGBA, alpha dropped",
             "RGBX": "RGBA, alpha dropped"}
    return "grayscale" if mode in _GRAY_MODES else kinds.get(mode, mode)


def _decode_image(path: Path) -> tuple[np.ndarray | None, str, tuple[int, int]]:
    """(pixels (32, 32, 3) uint8 RGB or None when not 32×32, original mode, (width, height)) of one file."""
    with Image.open(path) as image:
        mode, size = image.mode, image.size
        if size != (IMAGE_SHAPE[2], IMAGE_SHAPE[1]):
            return None, mode, size
        rgb = image if mode == "RGB" else image.convert("RGB")
        pixels = np.asarray(rgb, dtype=np.uint8)
    return pixels, mode, size


def _decoder(split: str):
    """The `cached_images` decoder of a split: non-RGB images converted (one message counting them), every
    unreadable or wrongly sized file reported at once."""

    def decode(root: Path, relpaths: list[str]) -> torch.Tensor:
        from tqdm.auto import tqdm

        images = np.empty((len(relpaths), *IMAGE_SHAPE), dtype=np.uint8)
        unreadable: list[str] = []
        wrong_size: list[str] = []
        converted: dict[str, int] = {}
        bar = tqdm(relpaths, desc=f"decoding CIFAR-10 {split}", unit=" images",
                   disable=not config.progress_enabled(), mininterval=0.5, dynamic_ncols=True)
        for i, rel in enumerate(bar):
            try:
                pixels, mode, (width, height) = _decode_image(root / rel)
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
                unreadable.append(f"{rel} ({type(err).__name__}: {err})")
                continue
            if pixels is None:
                wrong_size.append(f"{rel} is {width}×{height}")
                continue
            if mode != "RGB":
                kind = _mode_kind(mode)
                converted[kind] = converted.get(kind, 0) + 1
            images[i] = pixels.transpose(2, 0, 1)
        bar.close()
        if unreadable:
            also = f" ({len(wrong_size)} more are not 32×32)" if wrong_size else ""
            raise DataError(
                f"{len(unreadable)} of {len(relpaths):,} files in {root / split} could not be "
                f"read as images{also}: {_listing(unreadable)}. The files are corrupt, truncated "
                "or not JPEG/PNG images despite their names. Fix: delete or replace them (copy "
                "the dataset again if many are damaged).")
        if wrong_size:
            raise DataError(
                f"{len(wrong_size)} of {len(relpaths):,} images in {root / split} are not 32×32 "
                f"(width×height), the size of CIFAR-10: {_listing(wrong_size)}. labkit does not "
                "resize them silently (resizing changes the pixels every CIFAR-10 figure is "
                "measured on). Fix: replace them with the 32×32 originals, or resize them "
                "yourself on purpose (e.g. PIL's image.resize((32, 32))) into a copy.")
        if converted:
            kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(converted.items()))
            total = sum(converted.values())
            print(f"converted {total:,} non-RGB image{'s' if total != 1 else ''} ({kinds}) "
                  f"in {root / split} to RGB")
        return torch.from_numpy(images)

    return decode


def load_cifar10_folder_split(root: str | Path, split: str = "train",
                              verbose: bool = True) -> CIFAR10Split:
    """One split of an image folder, decoded once into a cache under `config.cache_dir()` keyed by the files'
    paths, sizes and times (a changed folder is decoded again); `files` are the rows' paths under `root`."""
    root = Path(root).expanduser()
    samples = image_folder_samples(root, split)
    cache = config.cache_dir()
    if is_inside(cache, root):
        raise DataError(
            f"the decoded-image cache {cache} would be inside the dataset folder {root}, which "
            "labkit never writes into. Fix: set LABKIT_DATA to a folder outside the dataset.")
    relpaths = [rel for rel, _ in samples]
    images = cached_images(root, relpaths, IMAGE_SHAPE[1], name=f"cifar10-folder-{split}",
                           cache_dir=cache, verbose=verbose, decoder=_decoder(split))
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return CIFAR10Split(images, labels, CLASSES, name=split, files=tuple(relpaths))


def holdout_indices(labels: torch.Tensor, holdout: int = HOLDOUT,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held_out) sorted index tensors: `holdout // 10` images of each class (the first `holdout % 10`
    classes one more), class `c` by `default_rng([seed, c])`, so one class's files do not change another's."""
    if holdout < 0:
        raise DataError(f"holdout must be >= 0 images, got {holdout}")
    labels_np = np.asarray(labels, dtype=np.int64)
    per_class, extra = divmod(int(holdout), len(CLASSES))
    held: list[np.ndarray] = []
    for label, name in enumerate(CLASSES):
        index = np.flatnonzero(labels_np == label)
        count = per_class + (1 if label < extra else 0)
        if count >= len(index) and count > 0:
            raise DataError(
                f"cannot hold out {count:,} {name} images: the training split has {len(index):,}, "
                f"and at least one must stay to train on. Fix: pass a smaller holdout (at most "
                f"{len(CLASSES) * (min(np.bincount(labels_np, minlength=len(CLASSES))) - 1):,} "
                "for this data).")
        order = np.random.default_rng([seed, label]).permutation(len(index))
        held.append(index[order[:count]])
    held_out = np.sort(np.concatenate(held)) if held else np.empty(0, dtype=np.int64)
    kept = np.setdiff1d(np.arange(len(labels_np)), held_out, assume_unique=True)
    return torch.from_numpy(kept.astype(np.int64)), torch.from_numpy(held_out.astype(np.int64))


def _subset(split: CIFAR10Split, index: torch.Tensor, name: str, description: str) -> CIFAR10Split:
    files = tuple(split.files[i] for i in index.tolist()) if split.files else ()
    return CIFAR10Split(split.images[index], split.labels[index], split.classes, name=name,
                        description=description, files=files)


def split_holdout(train: CIFAR10Split, holdout: int = HOLDOUT,
                  seed: int = 0) -> tuple[CIFAR10Split, CIFAR10Split]:
    """("train" minus the hold-out, "holdout") by `holdout_indices`."""
    if holdout <= 0:
        raise DataError(
            f"there is no test split, so an evaluation split must be held out of train, but "
            f"holdout={holdout}. Fix: pass a hold-out size, e.g. holdout={HOLDOUT} "
            f"({HOLDOUT // len(CLASSES)} per class), or add a test/<class>/ folder.")
    kept, held = holdout_indices(train.labels, holdout, seed)
    return (_subset(train, kept, "train",
                    f"train ({len(kept):,} of {len(train):,}; {len(held):,} held out)"),
            _subset(train, held, "holdout", f"hold-out ({len(held):,} of train)"))


def load_cifar10_folder(root: str | Path, *, holdout: int = HOLDOUT, seed: int = 0,
                        verbose: bool = True) -> tuple[CIFAR10Split, CIFAR10Split]:
    """(train, evaluation split) of an image folder: its test/ split, else `holdout` images held out of train."""
    root = Path(root).expanduser()
    if holdout < 0:
        raise DataError(f"holdout must be >= 0 images, got {holdout}")
    train = load_cifar10_folder_split(root, "train", verbose)
    if (root / "test").exists():
        return train, load_cifar10_folder_split(root, "test", verbose)
    return split_holdout(train, holdout, seed)


def _has_pickles(folder: Path) -> bool:
    return folder.is_dir() and (folder.name == FOLDER
                                or any((folder / name).is_file() for name in required_files()))


def _has_class_folders(train: Path) -> bool:
    return train.is_dir() and any((train / name).is_dir() for name in CLASSES)


def detect_cifar10_layout(root: str | Path | None = None) -> tuple[str, Path]:
    """("pickles", their folder) or ("images", the folder holding train/), looked for in `root` (default
    `config.data_root()`) and the folders directly inside it; a DataError names both layouts when none is found."""
    base = Path(root).expanduser() if root is not None else config.data_root()
    for candidate in (base, base / FOLDER):
        if _has_pickles(candidate):
            return "pickles", candidate
    if (base / "train").is_dir():
        return "images", base
    found = [sub for sub in sorted(base.iterdir()) if _has_class_folders(sub / "train")] \
        if base.is_dir() else []
    if len(found) == 1:
        return "images", found[0]
    accepted = f"either layout, in it or in a folder directly inside it: 1. {_PICKLE_LAYOUT}; " \
               f"2. {_FOLDER_LAYOUT}."
    if len(found) > 1:
        raise DataError(
            f"{base} holds several CIFAR-10 image folders ({_listing([p.name for p in found])}); "
            f"pass the one to use (e.g. {found[0]}).")
    if not base.is_dir():
        raise DataError(f"CIFAR-10 not found: {base} does not exist. labkit reads "
                        f"{accepted} Fix: pass the folder that holds one (or set "
                        "LABKIT_DATA to it), or download=True to fetch the pickles.")
    names = [p.name + ("/" if p.is_dir() else "") for p in sorted(base.iterdir())
             if not p.name.startswith(".")]
    hint = ""
    if any((base / name).is_dir() for name in CLASSES):
        hint = (f" {base} holds class folders itself: pass the folder above it"
                if base.name in FOLDER_SPLITS else
                f" {base} holds class folders itself: move them into {base / 'train'}")
        hint += " (the class folders belong in ROOT/train/)."
    raise DataError(
        f"no CIFAR-10 found in {base} (it holds {_listing(names) or 'nothing'}). labkit reads "
        f"{accepted}{hint} Fix: pass the folder that holds {FOLDER}/ or train/ (or set "
        "LABKIT_DATA to it), or download=True to fetch the official pickles.")


def load_cifar10_train_eval(
    root: str | Path | None = None, *, download: bool = False, holdout: int = HOLDOUT,
    seed: int = 0, verbose: bool = True,
) -> tuple[CIFAR10Split, CIFAR10Split]:
    """(train, evaluation split) from whichever layout `root` holds (`detect_cifar10_layout`): the pickles give
    train and test (`download=True` fetches them when nothing is found), an image folder see `load_cifar10_folder`."""
    if holdout < 0:
        raise DataError(f"holdout must be >= 0 images, got {holdout}")
    try:
        layout, folder = detect_cifar10_layout(root)
    except DataError:
        if not download:
            raise
        base = Path(root).expanduser() if root is not None else config.data_root()
        layout, folder = "pickles", download_cifar10(base)
    if layout == "images":
        return load_cifar10_folder(folder, holdout=holdout, seed=seed, verbose=verbose)
    missing = [name for name in required_files() if not (folder / name).is_file()]
    if missing and download and folder.name == FOLDER:
        download_cifar10(folder.parent)
        missing = [name for name in required_files() if not (folder / name).is_file()]
    if missing:
        raise _missing_error(folder, missing)
    return _read_pickle_split(folder, True), _read_pickle_split(folder, False)


def augmentation() -> Compose:
    """The standard CIFAR augmentation on uint8 batches: a random crop padded by 4 pixels, a random flip."""
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
    """(train, test) tensor-resident loaders on `device` (default the CPU): augmented and normalised there."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    train_loader = TensorLoader(train.images, train.labels, batch_size=batch_size, shuffle=True,
                                device=device, transform=train_transform(), seed=seed)
    test_loader = TensorLoader(test.images, test.labels, batch_size=eval_batch_size, shuffle=False,
                               device=device, transform=eval_transform())
    return train_loader, test_loader


def synthetic_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Learnable uint8 (N, 3, 32, 32) images: a class tint and a class stripe pattern (random phase), blended
    with a random colour and noise: recognisable after crops and flips, but not trivially."""
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
    """Write tiny balanced learnable CIFAR-10 into `<root>/cifar-10-batches-py` in the real pickle layout."""
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


def write_synthetic_cifar10_folder(
    root: str | Path, n_per_class: int = 10, seed: int = 0, *, test_per_class: int = 0,
    suffix: str = ".jpg", quality: int = 95,
) -> Path:
    """Write tiny learnable CIFAR-10 as an image folder `root/{train,test}/<class>/NNNN.jpg` (or .png)."""
    if n_per_class < 1 or test_per_class < 0:
        raise ValueError(f"need n_per_class >= 1 and test_per_class >= 0, "
                         f"got {n_per_class}, {test_per_class}")
    if suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"suffix must be one of {IMAGE_SUFFIXES}, got {suffix!r}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_per_class), ("test", test_per_class)):
        if count == 0:
            continue
        labels = np.repeat(np.arange(len(CLASSES), dtype=np.int64), count)
        images = synthetic_images(labels, rng).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
        for name in CLASSES:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for i, (label, pixels) in enumerate(zip(labels, images)):
            path = root / split / CLASSES[label] / f"{i % count:04d}{suffix}"
            options = {"quality": quality} if suffix.lower() in (".jpg", ".jpeg") else {}
            Image.fromarray(np.ascontiguousarray(pixels), "RGB").save(path, **options)
    return root
