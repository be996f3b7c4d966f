"""CIFAR-10 as an image folder (train/<class>/*.jpg): loading, cache, hold-out, layout detection
and clear errors; the real copy in ../shared/datasets/cifar-10-jpeg when present."""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from labkit import config
from labkit.errors import DataError
from labkit.labs.cifar10 import data as cifar


@pytest.fixture
def folder(tmp_path):
    """12 images per class, PNG so that the pixels are exact."""
    return cifar.write_synthetic_cifar10_folder(tmp_path / "cifar-10-png", 12, seed=1, suffix=".png")


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns, p.lstat().st_mode)
            for p in sorted(root.rglob("*"))}


def _set_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        mode = mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        path.chmod(mode)


def _count_decodes(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    real = cifar._decode_image

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(cifar, "_decode_image", counting)
    return calls


# --------------------------------------------------------------------------- layout and contents


def test_synthetic_folder_has_the_image_folder_layout(tmp_path):
    root = cifar.write_synthetic_cifar10_folder(tmp_path / "c", 3, seed=0, test_per_class=2)
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(cifar.CLASSES)
    assert sorted(p.name for p in (root / "train" / "cat").iterdir()) == ["0000.jpg", "0001.jpg",
                                                                           "0002.jpg"]
    assert len(list((root / "test").rglob("*.jpg"))) == 20
    with Image.open(root / "train" / "cat" / "0000.jpg") as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (32, 32))


def test_shapes_labels_and_pixels_match_the_files(folder):
    train, held = cifar.load_cifar10_folder(folder, holdout=20, seed=0, verbose=False)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert tuple(train.images.shape) == (100, 3, 32, 32) and tuple(held.images.shape) == (20, 3, 32, 32)
    assert train.classes == held.classes == cifar.CLASSES
    assert cifar.CLASSES == tuple(sorted(cifar.CLASSES))  # folder order = the pickles' label order
    for split in (train, held):
        assert len(split.files) == len(split)
        assert [cifar.CLASSES[y] for y in split.labels.tolist()] == [f.split("/")[1] for f in split.files]
    for i in (0, 37, 99):  # the rows are exactly what PIL decodes from the named file
        pixels = np.array(Image.open(folder / train.files[i]))
        assert torch.equal(train.images[i], torch.from_numpy(pixels).permute(2, 0, 1))
    assert (train.name, held.name) == ("train", "holdout")
    assert held.description == "hold-out (20 of train)"
    assert train.description == "train (100 of 120; 20 held out)"


def test_test_split_is_used_when_present(tmp_path):
    root = cifar.write_synthetic_cifar10_folder(tmp_path / "c", 5, seed=0, test_per_class=3)
    train, test = cifar.load_cifar10_folder(root, verbose=False)  # default holdout is not used
    assert (len(train), len(test)) == (50, 30)
    assert (train.name, test.name, test.description) == ("train", "test", "test")
    assert torch.bincount(test.labels).tolist() == [3] * 10


def test_pickle_splits_keep_their_old_names(tmp_path):
    cifar.write_synthetic_cifar10(tmp_path, n_train=60, n_test=20, seed=3)
    train, test = cifar.load_cifar10_splits(tmp_path)
    assert (train.name, train.description, test.name, test.description) == ("train",) * 2 + ("test",) * 2
    assert train.files == () and cifar.CIFAR10Split(train.images, train.labels, train.classes).name == ""


# --------------------------------------------------------------------------- hold-out


def test_holdout_is_stratified_deterministic_and_disjoint(folder):
    train, held = cifar.load_cifar10_folder(folder, holdout=30, seed=0, verbose=False)
    assert (len(train), len(held)) == (90, 30)
    assert torch.bincount(held.labels, minlength=10).tolist() == [3] * 10
    assert torch.bincount(train.labels, minlength=10).tolist() == [9] * 10
    assert not set(train.files) & set(held.files)
    assert len(set(train.files) | set(held.files)) == 120
    train2, held2 = cifar.load_cifar10_folder(folder, holdout=30, seed=0, verbose=False)
    assert held2.files == held.files and torch.equal(held2.images, held.images)
    assert torch.equal(train2.images, train.images)
    _, other = cifar.load_cifar10_folder(folder, holdout=30, seed=1, verbose=False)
    assert other.files != held.files  # the seed chooses


def test_holdout_indices_remainder_and_limits():
    labels = torch.arange(10).repeat(12)
    kept, held = cifar.holdout_indices(labels, 25, seed=0)
    assert torch.bincount(labels[held], minlength=10).tolist() == [3] * 5 + [2] * 5
    assert torch.equal(torch.sort(torch.cat([kept, held])).values, torch.arange(120))
    again = cifar.holdout_indices(labels, 25, seed=0)
    assert torch.equal(again[0], kept) and torch.equal(again[1], held)
    assert cifar.holdout_indices(labels, 0)[1].numel() == 0
    with pytest.raises(DataError, match="cannot hold out 12 airplane.*at most 110"):
        cifar.holdout_indices(labels, 120)


def test_holdout_zero_without_test_split_says_to_pass_a_size(folder):
    with pytest.raises(DataError) as err:
        cifar.load_cifar10_train_eval(folder, holdout=0, verbose=False)
    message = str(err.value)
    assert "no test split" in message and "pass a hold-out size" in message and "holdout=5000" in message
    with pytest.raises(DataError, match="cannot hold out 500"):
        cifar.load_cifar10_train_eval(folder, verbose=False)  # the default 5,000 needs 500 per class


# --------------------------------------------------------------------------- cache


def test_cache_is_reused_lives_under_labkit_data_and_never_in_the_data(folder, tmp_path, monkeypatch):
    data = tmp_path / "labkit-data"
    monkeypatch.setenv("LABKIT_DATA", str(data))
    calls = _count_decodes(monkeypatch)
    before = _snapshot(folder)
    _set_writable(folder, False)
    try:
        first = cifar.load_cifar10_folder(folder, holdout=20, verbose=False)
        assert len(calls) == 120
        caches = list(config.cache_dir().iterdir())
        assert len(caches) == 1 and caches[0].parent == data / "cache"
        assert caches[0].name.startswith("cifar10-folder-train-") and caches[0].suffix == ".pt"
        assert stat.S_IMODE(caches[0].stat().st_mode) == 0o644  # not mkstemp's 0o600
        second = cifar.load_cifar10_folder(folder, holdout=20, verbose=False)
        assert len(calls) == 120  # nothing decoded again
        assert all(torch.equal(a.images, b.images) for a, b in zip(first, second))
        assert list(config.cache_dir().iterdir()) == caches
    finally:
        _set_writable(folder, True)
    after = _snapshot(folder)
    for entry in after:  # the chmod round trip changes modes only; compare sizes and mtimes
        after[entry] = (*after[entry][:2], before[entry][2])
    assert after == before  # nothing was written into the data folder (holds for root too)


def test_changed_folder_rebuilds_the_cache(folder, monkeypatch):
    calls = _count_decodes(monkeypatch)
    first = cifar.load_cifar10_folder_split(folder, "train", verbose=False)
    victim = folder / "train" / "dog" / "0003.png"
    Image.new("RGB", (32, 32), (255, 0, 0)).save(victim)
    os.utime(victim, ns=(time.time_ns(), time.time_ns() + 10**9))
    again = cifar.load_cifar10_folder_split(folder, "train", verbose=False)
    assert len(calls) == 240 and len(list(config.cache_dir().iterdir())) == 2
    row = again.files.index("train/dog/0003.png")
    assert again.images[row, 0].float().mean() == 255
    others = torch.arange(len(first)) != row
    assert torch.equal(again.images[others], first.images[others])


def test_cache_inside_the_data_folder_is_refused(folder, monkeypatch):
    monkeypatch.setenv("LABKIT_DATA", str(folder / "labkit"))
    with pytest.raises(DataError, match="inside the dataset folder.*set LABKIT_DATA"):
        cifar.load_cifar10_folder(folder, holdout=10, verbose=False)
    assert not (folder / "labkit").exists()


def test_progress_bar_is_shown_when_enabled(folder, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_PROGRESS", "1")
    cifar.load_cifar10_folder_split(folder, "train", verbose=True)
    captured = capsys.readouterr()
    assert "decoding CIFAR-10 train" in captured.err and "120/120" in captured.err
    assert "decoded 120 images" in captured.out


# --------------------------------------------------------------------------- errors


def test_missing_and_extra_class_folders_are_named(folder):
    (folder / "train" / "cat").rename(folder / "train" / "Cat")
    with pytest.raises(DataError) as err:
        cifar.load_cifar10_folder(folder, holdout=10)
    message = str(err.value)
    assert "missing class folder(s) cat" in message and "unexpected folder(s) Cat" in message
    assert "airplane, automobile, bird, cat" in message and "Fix:" in message


def test_an_extra_class_folder_or_stray_file_is_named(folder):
    (folder / "train" / "unicorn").mkdir()
    (folder / "train" / "labels.csv").write_text("x")
    (folder / "train" / ".DS_Store").write_text("hidden entries are skipped")
    with pytest.raises(DataError) as err:
        cifar.load_cifar10_folder(folder, holdout=10)
    message = str(err.value)
    assert "unexpected folder(s) unicorn" in message and "unexpected file(s) labels.csv" in message
    assert "missing" not in message and ".DS_Store" not in message


def test_empty_class_is_an_error(folder):
    for path in (folder / "train" / "frog").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="frog .*hold no images"):
        cifar.load_cifar10_folder(folder, holdout=10)


def test_wrong_size_is_refused_not_resized(folder):
    Image.new("RGB", (31, 32)).save(folder / "train" / "bird" / "0005.png")
    Image.new("RGB", (64, 64)).save(folder / "train" / "ship" / "0000.png")
    with pytest.raises(DataError) as err:
        cifar.load_cifar10_folder(folder, holdout=10)
    message = str(err.value)
    assert "train/bird/0005.png is 31×32" in message and "train/ship/0000.png is 64×64" in message
    assert "2 of 120" in message and "not resize" in message
    assert not config.cache_dir().exists() or not list(config.cache_dir().iterdir())  # no cache


def test_corrupt_and_non_image_files_are_named(folder):
    (folder / "train" / "deer" / "0002.png").write_bytes(b"this is not a PNG")
    good = (folder / "train" / "horse" / "0001.png").read_bytes()
    (folder / "train" / "horse" / "0001.png").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(DataError) as err:
        cifar.load_cifar10_folder(folder, holdout=10)
    message = str(err.value)
    assert "train/deer/0002.png (UnidentifiedImageError" in message
    assert "train/horse/0001.png (OSError" in message and "2 of 120" in message
    (folder / "train" / "deer" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"train/deer/notes.txt \(not an image"):
        cifar.load_cifar10_folder(folder, holdout=10)


def test_non_rgb_images_are_converted_and_counted_once(folder, capsys):
    gray = Image.new("L", (32, 32), 77)
    gray.save(folder / "train" / "cat" / "0000.png")
    gray.save(folder / "train" / "cat" / "0001.png")
    Image.new("CMYK", (32, 32), (0, 0, 0, 0)).save(folder / "train" / "dog" / "0000.jpg")
    (folder / "train" / "dog" / "0000.png").unlink()
    Image.new("P", (32, 32), 3).save(folder / "train" / "truck" / "0000.png")
    capsys.readouterr()
    train = cifar.load_cifar10_folder_split(folder, "train", verbose=False)
    out = capsys.readouterr().out
    assert out.count("converted") == 1
    assert "converted 4 non-RGB images (1 CMYK, 2 grayscale, 1 palette)" in out
    row = train.files.index("train/cat/0001.png")
    assert train.images[row].unique().tolist() == [77]  # R = G = B
    assert train.images[train.files.index("train/dog/0000.jpg")].float().mean() > 250  # CMYK white


def test_symlink_outside_the_folder_is_refused(folder, tmp_path):
    outside = tmp_path / "elsewhere.png"
    Image.new("RGB", (32, 32)).save(outside)
    (folder / "train" / "cat" / "0100.png").symlink_to(outside)
    with pytest.raises(DataError) as err:
        cifar.load_cifar10_folder(folder, holdout=10)
    assert "train/cat/0100.png -> " in str(err.value) and str(outside) in str(err.value)
    (folder / "train" / "cat" / "0100.png").unlink()
    shutil.move(folder / "train" / "dog", tmp_path / "dog")
    (folder / "train" / "dog").symlink_to(tmp_path / "dog", target_is_directory=True)
    with pytest.raises(DataError, match="train/dog -> "):
        cifar.load_cifar10_folder(folder, holdout=10)


def test_symlink_inside_the_folder_is_fine(folder):
    (folder / "train" / "cat" / "0100.png").symlink_to(folder / "train" / "cat" / "0000.png")
    train = cifar.load_cifar10_folder_split(folder, "train", verbose=False)
    assert len(train) == 121
    a, b = train.files.index("train/cat/0000.png"), train.files.index("train/cat/0100.png")
    assert torch.equal(train.images[a], train.images[b])


# --------------------------------------------------------------------------- layout detection


def test_detects_the_image_folder_itself_or_its_parent(folder):
    assert cifar.detect_cifar10_layout(folder) == ("images", folder)
    assert cifar.detect_cifar10_layout(folder.parent) == ("images", folder)
    train, held = cifar.load_cifar10_train_eval(folder.parent, holdout=20, verbose=False)
    assert (len(train), len(held), held.name) == (100, 20, "holdout")


def test_detects_the_pickles_and_prefers_them(tmp_path):
    cifar.write_synthetic_cifar10(tmp_path, n_train=60, n_test=20, seed=3)
    pickles = tmp_path / cifar.FOLDER
    assert cifar.detect_cifar10_layout(tmp_path) == ("pickles", pickles)
    assert cifar.detect_cifar10_layout(pickles) == ("pickles", pickles)
    cifar.write_synthetic_cifar10_folder(tmp_path, 2)  # train/ beside the pickles
    train, test = cifar.load_cifar10_train_eval(tmp_path, holdout=0)
    reference = cifar.load_cifar10_splits(tmp_path)
    assert (train.name, test.name, len(train), len(test)) == ("train", "test", 60, 20)
    assert torch.equal(train.images, reference[0].images) and torch.equal(test.labels, reference[1].labels)
    (pickles / "test_batch").unlink()
    with pytest.raises(DataError, match="is missing test_batch"):
        cifar.load_cifar10_train_eval(pickles)


def test_no_layout_names_both(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    for where in (tmp_path, tmp_path / "nowhere"):
        with pytest.raises(DataError) as err:
            cifar.load_cifar10_train_eval(where)
        message = str(err.value)
        assert str(where) in message and "cifar-10-batches-py/" in message
        assert "train/<class>/*.jpg" in message and "download=True" in message
    assert "notes.txt" in str(err.value) or "does not exist" in str(err.value)


def test_passing_the_train_folder_itself_gets_a_hint(folder):
    with pytest.raises(DataError, match="pass the folder above it"):
        cifar.detect_cifar10_layout(folder / "train")


def test_several_image_folders_under_one_parent_are_ambiguous(tmp_path):
    cifar.write_synthetic_cifar10_folder(tmp_path / "a", 1)
    cifar.write_synthetic_cifar10_folder(tmp_path / "b", 1)
    with pytest.raises(DataError, match="several CIFAR-10 image folders \\(a, b\\)"):
        cifar.detect_cifar10_layout(tmp_path)


# --------------------------------------------------------------------------- the real copy


def _channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Exact per-channel mean and std of uint8 images in [0, 1], from 256-bin histograms."""
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for c in range(3):
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).to(torch.float64)
        mean = (counts * values).sum() / counts.sum()
        means.append(float(mean))
        stds.append(float(((counts * (values - mean) ** 2).sum() / counts.sum()).sqrt()))
    return means, stds


@pytest.mark.shared
def test_real_cifar10_jpeg(shared_datasets, tmp_path, monkeypatch):
    root = shared_datasets / "cifar-10-jpeg"
    if not (root / "train").is_dir():
        pytest.skip(f"real data not available: {root}/train is absent")
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path / "labkit-data"))
    full = cifar.load_cifar10_folder_split(root, "train", verbose=False)
    assert len(full) == 50_000 and tuple(full.images.shape[1:]) == (3, 32, 32)
    assert torch.bincount(full.labels, minlength=10).tolist() == [5_000] * 10
    assert [cifar.CLASSES[y] for y in full.labels.tolist()] == [f.split("/")[1] for f in full.files]
    for i in (0, 12_345, 49_999):
        pixels = np.array(Image.open(root / full.files[i]).convert("RGB"))
        assert torch.equal(full.images[i], torch.from_numpy(pixels).permute(2, 0, 1))
    means, stds = _channel_stats(full.images)
    assert means == pytest.approx([0.4913, 0.4821, 0.4465], abs=1e-3)
    assert stds == pytest.approx([0.2452, 0.2428, 0.2606], abs=1e-3)
    train, held = cifar.load_cifar10_train_eval(root)  # the cache is reused here
    assert (len(train), len(held)) == (45_000, 5_000)
    assert torch.bincount(held.labels, minlength=10).tolist() == [500] * 10
    assert held.description == "hold-out (5,000 of train)" and held.name == "holdout"
    assert not set(train.files) & set(held.files)
