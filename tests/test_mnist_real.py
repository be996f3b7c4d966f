"""Real MNIST (../shared/datasets, read-only): the loader agrees with known facts. Skipped when absent."""

from __future__ import annotations

import pytest
import torch

from labkit.labs.mnist import data as mnist

pytestmark = pytest.mark.shared


def test_real_mnist_matches_known_facts(shared_datasets):
    if not mnist.idx_available(shared_datasets):
        pytest.skip(f"no MNIST/raw in {shared_datasets}")
    (images, labels), (test_images, test_labels), _ = mnist.load_splits(shared_datasets)
    assert images.shape == (60_000, 28, 28) and test_images.shape == (10_000, 28, 28)
    assert images.dtype == torch.uint8 and labels.dtype == torch.long
    pixels = images.double() / 255
    assert pixels.mean().item() == pytest.approx(0.1307, abs=5e-5)
    assert pixels.std().item() == pytest.approx(0.3081, abs=5e-5)
    assert labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert labels.bincount(minlength=10).tolist()[:2] == [5923, 6742]
    assert test_labels.bincount(minlength=10).sum() == 10_000


def test_real_mnist_split_and_default_root(shared_datasets, monkeypatch):
    if not mnist.idx_available(shared_datasets):
        pytest.skip(f"no MNIST/raw in {shared_datasets}")
    monkeypatch.setenv("LABKIT_SHARED_DATASETS", str(shared_datasets))
    assert mnist.default_root() == shared_datasets  # LABKIT_DATA (a fresh temp dir) has no MNIST
    data = mnist.load_mnist()
    assert data.sizes() == {"train": 50_000, "val": 10_000, "test": 10_000}
    assert torch.equal(data.train_labels.bincount(minlength=10) + data.val_labels.bincount(minlength=10),
                       torch.tensor([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]))


def test_laptop_and_full_sizes_load_real_mnist(shared_datasets, monkeypatch):
    if not mnist.idx_available(shared_datasets):
        pytest.skip(f"no MNIST/raw in {shared_datasets}")
    from labkit.distributed import DistributedContext
    from labkit.labs import mnist as lab

    monkeypatch.setenv("LABKIT_SHARED_DATASETS", str(shared_datasets))
    ctx = DistributedContext(0, 1, 0, torch.device("cpu"), None)
    for size in ("laptop", "full"):
        data = lab.LAB.load_data(lab.LAB.config(size), ctx)
        assert data.source.sizes() == {"train": 50_000, "val": 10_000, "test": 10_000}
        assert "generated" not in data.description and "50,000" in data.description
        assert len(data.train) == 50_000 // 256 and data.eval["test"].num_items == 10_000
