"""Tiny-ImageNet in its official layout: reading, class order, read-only folders, bad annotations, cache."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from labkit.data.image_cache import cached_images
from labkit.errors import DataError, WriteError
from labkit.labs.tiny_imagenet.data import (
    TinyImageNet,
    build_val_imagefolder,
    imagefolder_datasets,
    resolve_root,
    write_synthetic_tiny_imagenet,
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return write_synthetic_tiny_imagenet(tmp_path_factory.mktemp("tiny"), n_classes=4,
                                         n_train_per_class=6, n_val_per_class=3, seed=1)


def _make_read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _make_writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_official_layout_is_read(synthetic):
    train, val = TinyImageNet(synthetic, "train"), TinyImageNet(synthetic.parent, "val")  # either folder works
    assert len(train) == 4 * 6 and len(val) == 4 * 3
    wnids_in_file = (synthetic / "wnids.txt").read_text().split()
    assert wnids_in_file != sorted(wnids_in_file)  # the file order is not the class order...
    assert train.classes == sorted(wnids_in_file)  # ...sorted wnids are
    assert train.class_names[0].startswith("synthetic class")
    image, target = train[0]
    assert image.size == (64, 64) and image.mode == "RGB" and target == 0


def test_train_and_val_share_sorted_wnid_indices(synthetic):
    train, val = TinyImageNet(synthetic, "train"), TinyImageNet(synthetic, "val")
    assert train.classes == val.classes == sorted(train.classes)
    assert train.class_to_idx == val.class_to_idx
    annotations = dict(line.split("\t")[:2] for line in
                       (synthetic / "val" / "val_annotations.txt").read_text().splitlines())
    for path, target in val.samples:
        assert val.classes[target] == annotations[Path(path).name]
    for path, target in train.samples:
        assert Path(path).parent.parent.name == train.classes[target]


def test_read_only_copy_works_and_stays_untouched(synthetic, tmp_path, monkeypatch):
    copy = tmp_path / "ro" / "tiny-imagenet-200"
    shutil.copytree(synthetic, copy)
    _make_read_only(copy)
    before = sorted(str(p.relative_to(copy)) for p in copy.rglob("*"))
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path / "data"))
    try:
        images, _ = TinyImageNet(copy, "val").tensors(verbose=False)
        assert images.shape == (12, 3, 64, 64) and images.dtype == torch.uint8
        out = build_val_imagefolder(copy, tmp_path / "val_folder")
        train, val = imagefolder_datasets(copy, out)
        assert len(val) == 12 and train.classes == val.classes
        assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*")) == before
        assert list((tmp_path / "data" / "cache").iterdir())  # the cache went to LABKIT_DATA
    finally:
        _make_writable(copy)


@pytest.mark.parametrize("bad_name", ["../../etc/passwd", "/etc/passwd", "..", "sub/../../x.JPEG"])
def test_annotation_pointing_outside_is_rejected(synthetic, tmp_path, bad_name):
    copy = tmp_path / "tiny-imagenet-200"
    shutil.copytree(synthetic, copy)
    annotations = copy / "val" / "val_annotations.txt"
    wnid = (copy / "wnids.txt").read_text().split()[0]
    annotations.write_text(annotations.read_text() + f"{bad_name}\t{wnid}\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="points outside its folder"):
        TinyImageNet(copy, "val")


def test_unknown_wnid_in_annotations_is_rejected(synthetic, tmp_path):
    copy = tmp_path / "tiny-imagenet-200"
    shutil.copytree(synthetic, copy)
    annotations = copy / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text() + "val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="n99999999.*not listed in wnids.txt"):
        TinyImageNet(copy, "val")


def test_clear_errors_for_wrong_path_and_missing_split(synthetic, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*data_prep.tiny_imagenet"):
        resolve_root(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no wnids.txt"):
        resolve_root(tmp_path)
    copy = tmp_path / "tiny-imagenet-200"
    shutil.copytree(synthetic, copy)
    shutil.rmtree(copy / "val")
    with pytest.raises(FileNotFoundError, match="val split is missing"):
        TinyImageNet(copy, "val")
    with pytest.raises(ValueError, match="test split has no labels"):
        TinyImageNet(copy, "test")
    shutil.rmtree(copy / "train")
    with pytest.raises(FileNotFoundError, match="train split is missing"):
        TinyImageNet(copy, "train")


def test_cache_is_reused_and_rebuilt_when_a_file_changes(synthetic, tmp_path):
    copy = tmp_path / "tiny-imagenet-200"
    shutil.copytree(synthetic, copy)
    cache = tmp_path / "cache"
    ds = TinyImageNet(copy, "train")
    first, targets = ds.tensors(cache_dir=cache, verbose=False)
    assert targets.tolist() == ds.targets and len(list(cache.iterdir())) == 1
    pixels = torch.stack([torch.from_numpy(np.array(ds[i][0])).permute(2, 0, 1)
                          for i in range(len(ds))])
    assert torch.equal(first, pixels)  # the cache holds exactly what PIL decodes
    again, _ = TinyImageNet(copy, "train").tensors(cache_dir=cache, verbose=False)
    assert torch.equal(first, again) and len(list(cache.iterdir())) == 1
    victim = Path(ds.samples[0][0])
    from PIL import Image
    Image.new("RGB", (64, 64), (255, 0, 0)).save(victim)
    changed, _ = TinyImageNet(copy, "train").tensors(cache_dir=cache, verbose=False)
    assert len(list(cache.iterdir())) == 2
    assert changed[0, 0].float().mean() > 250 and torch.equal(changed[1:], first[1:])


def test_cache_refuses_to_live_inside_the_dataset(synthetic):
    with pytest.raises(WriteError, match="inside the dataset folder"):
        cached_images(synthetic, ["train"], 64, name="x", cache_dir=synthetic / "cache")


def test_val_imagefolder_is_idempotent_and_matches_annotations(synthetic, tmp_path):
    out = build_val_imagefolder(synthetic, tmp_path / "val")
    listing = sorted(p.relative_to(out) for p in out.rglob("*"))
    stray = out / min(p.name for p in out.iterdir()) / "stale.JPEG"
    stray.write_bytes(b"old")
    assert build_val_imagefolder(synthetic, tmp_path / "val") == out
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == listing  # same links, stale one gone
    _, val = imagefolder_datasets(synthetic, out)
    ours = TinyImageNet(synthetic, "val")
    by_name = {Path(p).name: t for p, t in ours.samples}
    assert all(by_name[Path(p).name] == t for p, t in val.samples)
    with pytest.raises(ValueError, match="outside the dataset folder"):
        build_val_imagefolder(synthetic, synthetic / "val_folder")


def test_val_imagefolder_copies(synthetic, tmp_path):
    out = build_val_imagefolder(synthetic, tmp_path / "val", copy=True)
    files = [p for p in out.rglob("*.JPEG")]
    assert len(files) == 12 and not any(p.is_symlink() for p in files)


def test_synthetic_data_is_deterministic(tmp_path):
    a = write_synthetic_tiny_imagenet(tmp_path / "a", n_classes=2, n_train_per_class=2, n_val_per_class=1, seed=3)
    b = write_synthetic_tiny_imagenet(tmp_path / "b", n_classes=2, n_train_per_class=2, n_val_per_class=1, seed=3)
    assert (a / "wnids.txt").read_text() == (b / "wnids.txt").read_text()
    xa, _ = TinyImageNet(a, "train").tensors(cache_dir=tmp_path / "ca", verbose=False)
    xb, _ = TinyImageNet(b, "train").tensors(cache_dir=tmp_path / "cb", verbose=False)
    assert torch.equal(xa, xb)


def test_grayscale_jpegs_become_rgb_and_broken_files_are_named(synthetic, tmp_path):
    ds = TinyImageNet(synthetic, "train")
    images, _ = ds.tensors(cache_dir=tmp_path / "cache", verbose=False)
    gray = images[1]  # the writer stores image 1 of each class as grayscale
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    copy = tmp_path / "tiny-imagenet-200"
    shutil.copytree(synthetic, copy)
    broken = Path(TinyImageNet(copy, "train").samples[2][0])
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=f"could not read .*{broken.name}.*as an image"):
        TinyImageNet(copy, "train").tensors(cache_dir=tmp_path / "cache2", verbose=False)


def test_truncated_cache_is_rebuilt(synthetic, tmp_path, capsys):
    cache = tmp_path / "cache"
    first, _ = TinyImageNet(synthetic, "val").tensors(cache_dir=cache, verbose=False)
    (cached,) = cache.iterdir()
    cached.write_bytes(cached.read_bytes()[:100])
    again, _ = TinyImageNet(synthetic, "val").tensors(cache_dir=cache, verbose=False)
    assert torch.equal(first, again) and "unreadable" in capsys.readouterr().out


def test_cache_goes_to_labkit_cache_and_is_group_readable(synthetic, tmp_path, monkeypatch):
    """LABKIT_CACHE moves the decode-once cache (a course server's LABKIT_DATA may be read-only); the file is
    0o644 so one student's cache serves another (mkstemp alone would leave 0o600)."""
    from labkit import config

    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "elsewhere"))
    assert config.cache_dir() == tmp_path / "elsewhere"
    TinyImageNet(synthetic, "train").tensors(verbose=False)
    caches = list((tmp_path / "elsewhere").iterdir())
    assert len(caches) == 1 and stat.S_IMODE(caches[0].stat().st_mode) == 0o644


def test_a_read_only_cache_folder_is_an_error_before_decoding(synthetic, tmp_path, monkeypatch):
    from labkit.data import image_cache
    from labkit.errors import LabkitError

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    decoded = []
    monkeypatch.setattr(image_cache, "decode_all", lambda *a, **k: decoded.append(1))
    try:
        with pytest.raises(LabkitError, match="LABKIT_CACHE"):
            cached_images(synthetic, ["train"], 64, name="x", cache_dir=locked / "cache")
    finally:
        locked.chmod(0o755)
    assert decoded == []  # nothing decoded before the error


def test_per_class_subsets_decode_only_what_they_use(synthetic, tmp_path, monkeypatch):
    """--train-per-class / --val-per-class: a quick run over a large copy decodes only its images."""
    from labkit.data import image_cache
    from labkit.labs.tiny_imagenet import data as tiny_imagenet

    decoded: list[int] = []
    real_decode = image_cache.decode_all

    def counting(root, relpaths, size, desc=""):
        decoded.append(len(relpaths))
        return real_decode(root, relpaths, size)

    monkeypatch.setattr(image_cache, "decode_all", counting)
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    full_train, full_val = TinyImageNet(synthetic, "train"), TinyImageNet(synthetic, "val")
    data = tiny_imagenet.tiny_imagenet_loaders(synthetic, batch_size=4, train_per_class=2, val_per_class=1,
                                               verbose=False)
    n_classes = len(full_train.classes)
    assert decoded == [2 * n_classes, n_classes] and len(full_train) > 2 * n_classes and len(full_val) > n_classes
    assert len(data.val_files) == n_classes and data.val_images.shape[0] == n_classes
    # the same first-N-per-class images as subsetting after a full decode
    all_x, all_y = full_train.tensors(cache_dir=tmp_path / "all", verbose=False)
    keep = tiny_imagenet.subset_per_class(all_y, 2)
    assert torch.equal(data.train.tensors[0], all_x[keep])
