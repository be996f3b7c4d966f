"""CIFAR-10 on disk: synthetic pickles in the real layout, loading, and clear errors."""

from __future__ import annotations

import pickle
from typing import ClassVar

import numpy as np
import pytest
import torch

from labkit.errors import DataError
from labkit.labs.cifar10 import data as cifar


@pytest.fixture
def synthetic_root(tmp_path):
    cifar.write_synthetic_cifar10(tmp_path, n_train=60, n_test=20, seed=3)
    return tmp_path


def test_synthetic_files_have_the_real_layout(synthetic_root):
    folder = synthetic_root / cifar.FOLDER
    assert sorted(p.name for p in folder.iterdir()) == sorted(cifar.required_files())
    with open(folder / "data_batch_1", "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    assert entry["data"].dtype == np.uint8 and entry["data"].shape == (12, 3072)
    assert len(entry["labels"]) == 12 and {"batch_label", "filenames"} <= set(entry)
    with open(folder / "batches.meta", "rb") as f:
        assert pickle.load(f, encoding="latin1")["label_names"][0] == "airplane"


def test_torchvision_reads_the_synthetic_files(synthetic_root):
    """The layout is torchvision's: its CIFAR10 class reads our files (given their md5s)."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import calculate_md5

    folder = synthetic_root / cifar.FOLDER

    class SyntheticCIFAR10(CIFAR10):
        train_list: ClassVar = [[n, calculate_md5(str(folder / n))] for n in cifar.TRAIN_FILES]
        test_list: ClassVar = [["test_batch", calculate_md5(str(folder / "test_batch"))]]
        meta: ClassVar = {**CIFAR10.meta, "md5": calculate_md5(str(folder / "batches.meta"))}

    reference = SyntheticCIFAR10(str(synthetic_root), train=True)
    ours = cifar.load_cifar10(synthetic_root, train=True)
    assert len(reference) == len(ours) == 60
    # torchvision keeps HWC numpy; ours is CHW tensors of the same bytes in the same order
    assert np.array_equal(reference.data, ours.images.permute(0, 2, 3, 1).numpy())
    assert reference.targets == ours.labels.tolist()
    assert tuple(reference.classes) == ours.classes == cifar.CLASSES


def test_load_gives_uint8_chw_tensors_and_balanced_labels(synthetic_root):
    train, test = cifar.load_cifar10_splits(synthetic_root)
    assert train.images.dtype == torch.uint8 and train.images.shape == (60, 3, 32, 32)
    assert test.images.shape == (20, 3, 32, 32) and len(test) == 20
    assert train.labels.dtype == torch.int64
    assert train.labels.bincount(minlength=10).tolist() == [6] * 10


def test_synthetic_data_is_deterministic_and_class_dependent(tmp_path):
    a = cifar.load_cifar10(cifar.write_synthetic_cifar10(tmp_path / "a", 50, 10, seed=1).parent)
    b = cifar.load_cifar10(cifar.write_synthetic_cifar10(tmp_path / "b", 50, 10, seed=1).parent)
    assert torch.equal(a.images, b.images)
    # a nearest-class-mean classifier on raw pixels beats chance by far: the data are learnable
    x = a.images.float().flatten(1)
    means = torch.stack([x[a.labels == c].mean(0) for c in range(10)])
    predicted = torch.cdist(x, means).argmin(1)
    assert (predicted == a.labels).float().mean() > 0.5


def test_missing_data_names_the_folder_and_files(tmp_path):
    with pytest.raises(DataError) as err:
        cifar.load_cifar10(tmp_path, download=False)
    message = str(err.value)
    assert str(tmp_path / cifar.FOLDER) in message
    assert "data_batch_1" in message and "batches.meta" in message
    assert "data_prep/cifar10.py" in message and cifar.URL in message


def test_partly_missing_data_lists_only_the_missing_files(synthetic_root):
    (synthetic_root / cifar.FOLDER / "test_batch").unlink()
    cifar.load_cifar10(synthetic_root, train=True)  # the training split is complete
    with pytest.raises(DataError, match="is missing test_batch\\."):
        cifar.load_cifar10(synthetic_root, train=False)


def test_default_root_is_labkit_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_DATA", str(tmp_path))
    assert cifar.cifar10_folder() == tmp_path / "cifar-10-batches-py"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_shape", "code"])
def test_corrupt_pickle_is_a_clear_error(synthetic_root, damage):
    path = synthetic_root / cifar.FOLDER / "data_batch_2"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "garbage":
        path.write_bytes(b"\x80\x04this is not a pickle at all")
    elif damage == "wrong_shape":
        with open(path, "wb") as f:
            pickle.dump({"data": np.zeros((4, 100), np.uint8), "labels": [0, 1, 2, 3]}, f)
    else:  # a pickle that would run code on load is refused, not executed
        with open(path, "wb") as f:
            pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [0], "x": print}, f)
    with pytest.raises(DataError, match="data_batch_2") as err:
        cifar.load_cifar10(synthetic_root)
    assert "download it again" in str(err.value)


def _windows(image: torch.Tensor, padding: int) -> list[torch.Tensor]:
    """Every crop of the zero-padded image and of its mirror image."""
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    h, w = image.shape[-2:]
    out = []
    for source in (padded, padded.flip(-1)):
        out += [source[:, dy:dy + h, dx:dx + w] for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)]
    return out


def test_augmentation_crops_and_flips_a_known_batch():
    x = torch.arange(64 * 3 * 32 * 32, dtype=torch.int64).remainder(251).to(torch.uint8).view(64, 3, 32, 32)
    out = cifar.augmentation()(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    flipped = 0
    for i in range(64):
        windows = _windows(x[i], 4)
        match = [k for k, w in enumerate(windows) if torch.equal(out[i], w)]
        assert match, f"image {i} is not a 4-pixel-padded crop of the input or of its mirror"
        flipped += match[0] >= 81
    assert 16 <= flipped <= 48  # about half are mirrored
    assert not torch.equal(out, x)


def test_loaders_serve_normalised_augmented_batches(synthetic_root):
    train, test = cifar.load_cifar10_splits(synthetic_root)
    train_loader, test_loader = cifar.cifar10_loaders(train, test, batch_size=16, seed=0)
    batches = list(train_loader)
    assert len(train_loader) == len(batches) == 4  # 60 images: 16, 16, 16, 12
    images, labels = batches[0]
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == sorted(train.labels.tolist())
    # test batches are the images in order, normalised and never augmented
    (test_images, test_labels), = list(test_loader)
    mean = torch.tensor(cifar.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cifar.STD).view(1, 3, 1, 1)
    assert torch.allclose(test_images, (test.images.float() / 255 - mean) / std, atol=1e-5)
    assert torch.equal(test_labels, test.labels)
    # the same epoch gives the same batches; the next epoch a different shuffle and augmentation
    train_loader.set_epoch(1)
    first = next(iter(train_loader))[0]
    train_loader.set_epoch(1)
    assert torch.equal(first, next(iter(train_loader))[0])
    train_loader.set_epoch(2)
    assert not torch.equal(first, next(iter(train_loader))[0])
