"""Tiny-ImageNet-200 read directly from its official on-disk layout.

    tiny-imagenet-200/
        wnids.txt                      the 200 class ids (WordNet ids), one a line
        words.txt                      wnid <TAB> readable names, for all of WordNet
        train/<wnid>/images/*.JPEG     500 images per class (64×64 RGB or grayscale)
        val/images/val_<i>.JPEG        10,000 images
        val/val_annotations.txt        file <TAB> wnid <TAB> x0 y0 x1 y1 (the val labels)

Class index `i` is the i-th wnid in **sorted** order, for train and val alike (what
`ImageFolder` does on the train folder). The dataset folder is only ever read.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from labkit import config
from labkit.data import image_cache
from labkit.data.augment import Compose, Normalize, RandomCrop
from labkit.data.image_cache import cached_images, is_inside
from labkit.data.tensor_loader import TensorLoader
from labkit.errors import DataError
from labkit.files import read_utf8

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
FOLDER = "tiny-imagenet-200"
IMAGE_SIZE = 64
SPLITS = ("train", "val")
#: ImageNet statistics, as PyTorch's ImageNet example and torchvision's pretrained weights use.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}

_GET_IT = ("Download it with `python -m data_prep.tiny_imagenet` (official zip: "
           f"{URL}), or pass the folder that holds wnids.txt (e.g. --data PATH).")


# --------------------------------------------------------------------------- layout


def resolve_root(root: str | Path | None = None) -> Path:
    """The folder holding `wnids.txt`: `root` itself or `root/tiny-imagenet-200`.

    Without `root`: `labkit.config.data_root()/tiny-imagenet-200`.
    """
    base = Path(root).expanduser() if root is not None else config.data_root() / FOLDER
    for candidate in (base, base / FOLDER):
        if (candidate / "wnids.txt").is_file():
            return candidate
    if not base.exists():
        raise DataError(f"Tiny-ImageNet folder {base} does not exist. {_GET_IT}")
    raise DataError(
        f"{base} is not a Tiny-ImageNet folder: no wnids.txt in it (nor in {base / FOLDER}). "
        f"Expected the official layout (wnids.txt, words.txt, train/, val/). {_GET_IT}")


def read_wnids(root: Path) -> list[str]:
    """The class ids from `wnids.txt`, sorted: list index = class index for every split."""
    lines = [line.strip() for line in read_utf8(root / "wnids.txt", "the class list").splitlines()]
    wnids = [w for w in lines if w]
    if not wnids:
        raise DataError(f"{root / 'wnids.txt'} lists no class ids.")
    if len(set(wnids)) != len(wnids):
        raise DataError(f"{root / 'wnids.txt'} lists some class ids twice.")
    for wnid in wnids:
        _check_plain_name(wnid, root / "wnids.txt")
    return sorted(wnids)


def read_class_names(root: Path, wnids: Sequence[str]) -> list[str]:
    """A short readable name per class from `words.txt` (its first synonym); the wnid when absent."""
    words: dict[str, str] = {}
    path = root / "words.txt"
    if path.is_file():
        wanted = set(wnids)
        for line in read_utf8(path, "the class names").splitlines():
            wnid, _, names = line.partition("\t")
            if wnid in wanted:
                words[wnid] = names.split(",")[0].strip()
    return [words.get(w) or w for w in wnids]


def _check_plain_name(name: str, source: Path) -> None:
    """A file or folder name must stay inside its folder: no separators, no '..', not absolute."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or len(pure.parts) != 1 or name in {".", ".."} or os.path.isabs(name):
        raise DataError(
            f"{source} names {name!r}, which points outside its folder. Entries must be plain "
            "file names such as 'val_0.JPEG'; refusing to read it (is the file corrupted or tampered with?).")


def links_outside(root: Path, relpaths: Sequence[str]) -> list[str]:
    """The files among `relpaths` that are symbolic links to somewhere outside the dataset folder."""
    return [rel for rel in relpaths if (root / rel).is_symlink() and not is_inside(root / rel, root)]


def warn_links_outside(root: Path, relpaths: Sequence[str]) -> None:
    """Say so when a dataset folder's files are links out of it: they are read, but they are not the dataset."""
    outside = links_outside(root, relpaths)
    if outside:
        warnings.warn(
            f"{len(outside)} file(s) in {root} are symbolic links to files outside the dataset folder, e.g. "
            f"{outside[0]} -> {(root / outside[0]).resolve()}. They are read as part of the dataset; if that is "
            "not intended, replace them with the real files.", UserWarning, stacklevel=3)


def _image_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def train_samples(root: Path, wnids: Sequence[str]) -> list[tuple[str, int]]:
    """(relative path, class index) for every train image, class by class in sorted-wnid order."""
    train = root / "train"
    if not train.is_dir():
        raise DataError(f"the train split is missing: {train} does not exist. {_GET_IT}")
    samples: list[tuple[str, int]] = []
    for index, wnid in enumerate(wnids):
        folder = train / wnid / "images"
        if not folder.is_dir():
            raise DataError(
                f"class {wnid} (listed in wnids.txt) has no folder {folder}: expected "
                "train/<wnid>/images/*.JPEG. Is the dataset fully extracted?")
        samples += [(f"train/{wnid}/images/{name}", index) for name in _image_files(folder)]
    if not samples:
        raise DataError(f"no images found under {train}/<wnid>/images/.")
    seen = {index for _, index in samples}
    empty = [wnid for index, wnid in enumerate(wnids) if index not in seen]
    if empty:
        warnings.warn(f"{len(empty)} of {len(wnids)} classes have no train images in {train} (e.g. "
                      f"{train / empty[0] / 'images'} is empty): the model never sees them. Is the dataset fully "
                      "extracted?", UserWarning, stacklevel=2)
    return samples


def val_samples(root: Path, wnids: Sequence[str]) -> list[tuple[str, int]]:
    """(relative path, class index) for every line of `val/val_annotations.txt`, in file order.

    The class index comes from the same sorted wnids as train. Lines whose file name
    points outside `val/images/` (absolute, '..') or whose wnid is not in wnids.txt are
    rejected with an error naming the line.
    """
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DataError(
            f"the val split is missing: {annotations} does not exist (the val labels live in "
            f"that file, one 'file<TAB>wnid<TAB>box' line per image). {_GET_IT}")
    class_to_idx = {w: i for i, w in enumerate(wnids)}
    samples: list[tuple[str, int]] = []
    seen: set[str] = set()
    for number, line in enumerate(read_utf8(annotations, "the val labels").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"{annotations}:{number}"
        if len(fields) < 2:
            raise DataError(f"{where}: expected 'file<TAB>wnid<TAB>box', got {line!r}.")
        name, wnid = fields[0].strip(), fields[1].strip()
        _check_plain_name(name, Path(where))
        if wnid not in class_to_idx:
            raise DataError(f"{where}: class {wnid!r} is not listed in wnids.txt.")
        if name in seen:
            raise DataError(f"{where}: {name} is labelled twice.")
        seen.add(name)
        if not (root / "val" / "images" / name).is_file():
            raise DataError(f"{where}: the image val/images/{name} does not exist.")
        samples.append((f"val/images/{name}", class_to_idx[wnid]))
    if not samples:
        raise DataError(f"{annotations} labels no images.")
    return samples


# --------------------------------------------------------------------------- datasets


class TinyImageNet(torch.utils.data.Dataset):
    """One split as (PIL RGB image, class index) pairs read in place (`classes`: the sorted wnids); `tensors()`
    gives the whole split decoded once (cached) as uint8 tensors."""

    def __init__(self, root: str | Path | None = None, split: str = "train",
                 transform=None, target_transform=None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r} (the test split has no labels).")
        self.root = resolve_root(root)
        self.split = split
        self.transform = transform
        self.target_transform = target_transform
        self.classes = read_wnids(self.root)
        self.class_to_idx = {w: i for i, w in enumerate(self.classes)}
        self.class_names = read_class_names(self.root, self.classes)
        listing = train_samples if split == "train" else val_samples
        self._relative = listing(self.root, self.classes)
        self.samples = [(str(self.root / rel), target) for rel, target in self._relative]
        self.targets = [target for _, target in self._relative]
        warn_links_outside(self.root, [rel for rel, _ in self._relative])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        with Image.open(path) as image:
            image = image.convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def keep_per_class(self, per_class: int) -> TinyImageNet:
        """Keep only the first `per_class` images of every class (file order), before anything is decoded:
        a quick run over a large copy decodes and caches only what it uses."""
        keep = subset_per_class(torch.tensor(self.targets, dtype=torch.int64), per_class).tolist()
        self._relative = [self._relative[i] for i in keep]
        self.samples = [self.samples[i] for i in keep]
        self.targets = [self.targets[i] for i in keep]
        return self

    def tensors(self, cache_dir: Path | None = None, verbose: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as one (N, 3, 64, 64) uint8 tensor (decoded once, then cached) and int64 targets."""
        images = cached_images(self.root, [rel for rel, _ in self._relative], IMAGE_SIZE,
                               name=f"tiny-imagenet-{self.split}", cache_dir=cache_dir, verbose=verbose,
                               decoder=_decode_64)
        return images, torch.tensor(self.targets, dtype=torch.int64)

    def __repr__(self) -> str:
        return (f"TinyImageNet(split={self.split!r}, images={len(self)}, classes={len(self.classes)}, "
                f"root={str(self.root)!r})")


def _decode_64(root: Path, relpaths: Sequence[str]) -> torch.Tensor:
    """Decode every image; refuse (as CIFAR-10 does) any that is not 64×64 instead of resizing it silently."""
    wrong = []
    for rel in relpaths:
        try:
            with Image.open(root / rel) as image:
                if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                    wrong.append((rel, image.size))
        except OSError:
            pass  # unreadable: decode_all names it
    if wrong:
        rel, (width, height) = wrong[0]
        raise DataError(
            f"{len(wrong)} of {len(relpaths):,} images in {root} are not {IMAGE_SIZE}×{IMAGE_SIZE}, the size of "
            f"Tiny-ImageNet: {root / rel} is {width}×{height} (width×height). labkit does not resize them silently "
            "(that changes the pixels every figure is measured on). Fix: replace them with the 64×64 originals, or "
            "resize them yourself on purpose into a copy of the dataset.")
    return image_cache.decode_all(root, relpaths, IMAGE_SIZE, desc="decoding Tiny-ImageNet once into the cache")


def subset_per_class(targets: torch.Tensor, per_class: int) -> torch.Tensor:
    """Indices of the first `per_class` items of every class (keeps the order otherwise)."""
    seen: dict[int, int] = {}
    keep = []
    for i, t in enumerate(targets.tolist()):
        if seen.get(t, 0) < per_class:
            seen[t] = seen.get(t, 0) + 1
            keep.append(i)
    return torch.tensor(keep, dtype=torch.int64)


# --------------------------------------------------------------------------- tensor-resident loaders


def train_transform(padding: int = 4) -> Compose:
    """Batched augmentation on uint8 batches: random crop with `padding`, flip, then normalise."""
    return Compose([RandomCrop(padding, flip=0.5), Normalize(MEAN, STD)])  # uint8 in, normalised float out


def eval_transform() -> Compose:
    """Evaluation batches: only scaling and normalisation."""
    return Compose([Normalize(MEAN, STD)])  # uint8 in, normalised float out


@dataclass
class TinyImageNetData:
    """Loaders and what the lab needs beside them (class names, val file names and pixels)."""

    train: TensorLoader
    val: TensorLoader
    classes: list[str]
    class_names: list[str]
    val_files: list[str]
    val_images: torch.Tensor  # uint8 (N, 3, 64, 64), the val set in loader order
    root: Path

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def tiny_imagenet_loaders(root: str | Path | None = None, *, batch_size: int = 128,
                          eval_batch_size: int | None = None, device: str | torch.device | None = "cpu",
                          augment: bool = True, padding: int = 4, seed: int = 0,
                          train_per_class: int | None = None, val_per_class: int | None = None,
                          rank: int = 0, world_size: int = 1, verbose: bool = True) -> TinyImageNetData:
    """Train (shuffled, batch-augmented) and val (file order) `TensorLoader`s over the cached uint8 tensors on
    `device`, sharded by `rank`/`world_size`; `*_per_class` keep the first N images of each class."""
    train_set, val_set = TinyImageNet(root, "train"), TinyImageNet(root, "val")
    if train_per_class is not None:
        train_set.keep_per_class(train_per_class)
    if val_per_class is not None:
        val_set.keep_per_class(val_per_class)
    train_x, train_y = train_set.tensors(verbose=verbose)
    val_x, val_y = val_set.tensors(verbose=verbose)
    val_files = [Path(path).name for path, _ in val_set.samples]
    shard = {"rank": rank, "world_size": world_size, "device": device}
    train = TensorLoader(train_x, train_y, batch_size=batch_size, shuffle=True, seed=seed,
                         transform=train_transform(padding) if augment else eval_transform(), **shard)
    val = TensorLoader(val_x, val_y, batch_size=eval_batch_size or 2 * batch_size, shuffle=False,
                       transform=eval_transform(), **shard)
    return TinyImageNetData(train, val, train_set.classes, train_set.class_names, val_files,
                            val_x, train_set.root)


# --------------------------------------------------------------------------- ImageFolder path


def build_val_imagefolder(root: str | Path | None, out: str | Path, copy: bool = False) -> Path:
    """Reorganise val into `out/<wnid>/<file>` (symlinks, or copies) for `ImageFolder`, outside the dataset; every
    wnid gets a folder (so the classes match train's); running it again fixes wrong or stale entries only."""
    root = resolve_root(root)
    out = Path(out).expanduser()
    if out.resolve() == root.resolve() or is_inside(out, root):
        raise ValueError(f"the reorganised val folder {out} must be outside the dataset folder {root}, "
                         "which labkit never writes into; choose e.g. ~/.cache/labkit/tiny-imagenet-val.")
    wnids = read_wnids(root)
    samples = val_samples(root, wnids)
    wanted: dict[Path, Path] = {}
    for rel, target in samples:
        source = (root / rel).resolve()
        wanted[out / wnids[target] / Path(rel).name] = source
    for wnid in wnids:
        (out / wnid).mkdir(parents=True, exist_ok=True)
    for link, source in wanted.items():
        if copy:
            if link.is_symlink():
                link.unlink()
            if not link.exists() or link.stat().st_size != source.stat().st_size:
                shutil.copyfile(source, link)
        else:
            if link.is_symlink() and Path(os.readlink(link)) == source:
                continue
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(source)
    for wnid in wnids:  # entries from an older, different labelling
        for entry in (out / wnid).iterdir():
            if entry not in wanted:
                entry.unlink()
    return out


def imagefolder_datasets(root: str | Path | None, val_folder: str | Path,
                         train_transform=None, val_transform=None):
    """torchvision `ImageFolder`s of train (in place) and the reorganised val; refuses differing class orders."""
    from torchvision.datasets import ImageFolder

    root = resolve_root(root)
    train = ImageFolder(str(root / "train"), transform=train_transform)
    val = ImageFolder(str(val_folder), transform=val_transform)
    if train.classes != val.classes:
        raise DataError(
            f"train has {len(train.classes)} classes and {val_folder} has {len(val.classes)}, or their "
            "order differs: rebuild the val folder with build_val_imagefolder().")
    return train, val


# --------------------------------------------------------------------------- synthetic data


def write_synthetic_tiny_imagenet(root: str | Path, n_classes: int = 5, n_train_per_class: int = 20,
                                  n_val_per_class: int = 5, seed: int = 0) -> Path:
    """Write a tiny, learnable Tiny-ImageNet (a colour and stripes per class) in the official layout under
    `root/tiny-imagenet-200`: JPEGs (one grayscale per class), a shuffled wnids.txt (only sorting gives the right
    order), words.txt with extra lines, boxes files and a shuffled val_annotations.txt."""
    if n_classes < 1 or n_train_per_class < 1 or n_val_per_class < 1:
        raise ValueError("need n_classes >= 1, n_train_per_class >= 1 and n_val_per_class >= 1.")
    rng = np.random.default_rng(seed)
    folder = Path(root) / FOLDER
    wnids = [f"n{int(v):08d}" for v in rng.choice(10_000_000, size=n_classes, replace=False) + 1_000_000]
    names = [f"synthetic class {i}" for i in range(n_classes)]
    colours = rng.uniform(40, 215, size=(n_classes, 3))
    frequencies = rng.uniform(1.0, 6.0, size=n_classes)
    vertical = rng.random(n_classes) < 0.5

    def draw(k: int) -> Image.Image:
        grid = np.arange(IMAGE_SIZE, dtype=np.float64)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * frequencies[k] * grid / IMAGE_SIZE + phase)
        stripes = wave[None, :] if vertical[k] else wave[:, None]
        pixels = colours[k][None, None, :] + 40 * stripes[..., None] + rng.normal(0, 20, (IMAGE_SIZE, IMAGE_SIZE, 3))
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))

    (folder / "val" / "images").mkdir(parents=True, exist_ok=True)
    shuffled = list(wnids)
    rng.shuffle(shuffled)
    (folder / "wnids.txt").write_text("\n".join(shuffled) + "\n")
    words = ["n00001740\tentity"] + [f"{w}\t{n}, other synonym" for w, n in zip(wnids, names)]
    (folder / "words.txt").write_text("\n".join(words) + "\n")
    for k, wnid in enumerate(wnids):
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True, exist_ok=True)
        boxes = []
        for i in range(n_train_per_class):
            image = draw(k)
            if i == 1:  # the real data has some grayscale JPEGs
                image = image.convert("L")
            image.save(images / f"{wnid}_{i}.JPEG", quality=90)
            boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t63\t63")
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(boxes) + "\n")
    labels = [k for k in range(n_classes) for _ in range(n_val_per_class)]
    rng.shuffle(labels)
    lines = []
    for i, k in enumerate(labels):
        draw(k).save(folder / "val" / "images" / f"val_{i}.JPEG", quality=90)
        lines.append(f"val_{i}.JPEG\t{wnids[k]}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder
