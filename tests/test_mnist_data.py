"""MNIST on disk: IDX and .pth loaders, clear errors, the seeded split, download with mirrors, synthetic data."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import pytest
import torch

from labkit.errors import DataError
from labkit.files import file_digest
from labkit.labs.mnist import data as mnist
from tests.serve import serve_folder


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    return mnist.write_synthetic_mnist(tmp_path_factory.mktemp("mnist"), n_train=240, n_test=60, seed=0)


def test_synthetic_files_are_in_torchvisions_layout_and_readable_by_torchvision(synthetic_root):
    from torchvision.datasets import MNIST

    raw = synthetic_root / "MNIST" / "raw"
    for names in mnist.IDX_FILES.values():
        for name in names:
            assert (raw / name).is_file() and (raw / f"{name}.gz").is_file()
    theirs = MNIST(str(synthetic_root), train=True, download=False)
    images, labels = mnist.load_idx_split(synthetic_root, "train")
    assert torch.equal(theirs.data, images) and torch.equal(theirs.targets, labels)
    assert images.shape == (240, 28, 28) and images.dtype == torch.uint8
    assert torch.equal(labels.bincount(minlength=10), torch.full((10,), 24))
    assert torch.equal(mnist.read_idx(raw / "train-images-idx3-ubyte.gz"), images)


def test_synthetic_digits_are_deterministic_and_classes_differ():
    a, la = mnist.synthetic_digits(50, seed=3)
    b, lb = mnist.synthetic_digits(50, seed=3)
    assert torch.equal(a, b) and torch.equal(la, lb)
    templates = mnist.digit_templates()
    distances = torch.cdist(templates.flatten(1), templates.flatten(1))
    assert distances[~torch.eye(10, dtype=torch.bool)].min() > 2  # every pair of digits differs


def test_idx_roundtrip_plain_and_gz(tmp_path):
    tensor = torch.randint(0, 256, (5, 3, 4), dtype=torch.uint8)
    for name in ("x-idx3-ubyte", "x-idx3-ubyte.gz"):
        mnist.write_idx(tmp_path / name, tensor)
        assert torch.equal(mnist.read_idx(tmp_path / name), tensor)


def test_idx_reader_decodes_big_endian_ints(tmp_path):
    values = torch.tensor([1, -2, 70000], dtype=torch.int32)
    payload = bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big") + b"".join(
        int(v).to_bytes(4, "big", signed=True) for v in values)
    (tmp_path / "ints").write_bytes(payload)
    assert torch.equal(mnist.read_idx(tmp_path / "ints"), values)


def test_bad_idx_files_raise_clear_errors(tmp_path):
    (tmp_path / "not-idx").write_bytes(b"hello world")
    with pytest.raises(DataError, match="not an IDX file"):
        mnist.read_idx(tmp_path / "not-idx")
    mnist.write_idx(tmp_path / "cut", torch.zeros(4, 28, 28, dtype=torch.uint8))
    data = (tmp_path / "cut").read_bytes()
    (tmp_path / "cut").write_bytes(data[:-100])
    with pytest.raises(DataError, match="truncated or corrupt"):
        mnist.read_idx(tmp_path / "cut")
    (tmp_path / "broken.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="gzip"):
        mnist.read_idx(tmp_path / "broken.gz")


def test_missing_data_names_the_expected_files_and_the_fetch_command(tmp_path):
    with pytest.raises(DataError) as err:
        mnist.load_mnist(tmp_path)
    message = str(err.value)
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert "train_data.pth" in message and "data_prep/mnist.py" in message and "download=True" in message


def test_gz_only_folder_is_read(synthetic_root, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for path in (synthetic_root / "MNIST" / "raw").glob("*.gz"):
        shutil.copy(path, raw / path.name)
    data = mnist.load_mnist(tmp_path)
    assert data.sizes() == {"train": 200, "val": 40, "test": 60}


def test_pth_files_load_and_match_idx(synthetic_root, tmp_path):
    for split in ("train", "test"):
        mnist.save_pth(tmp_path, split, *mnist.load_idx_split(synthetic_root, split))
    from_pth = mnist.load_mnist(tmp_path)
    from_idx = mnist.load_mnist(synthetic_root)
    assert ".pth" in from_pth.source and "IDX" in from_idx.source
    for split in ("train", "val", "test"):
        assert all(torch.equal(a, b) for a, b in zip(from_pth.split(split), from_idx.split(split)))


def _write_pth(folder: Path, images, labels, test=None):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(images, folder / "train_data.pth")
    torch.save(labels, folder / "train_labels.pth")
    test_images, test_labels = test or (torch.zeros(3, 28, 28, dtype=torch.uint8), torch.zeros(3, dtype=torch.long))
    torch.save(test_images, folder / "test_data.pth")
    torch.save(test_labels, folder / "test_labels.pth")


@pytest.mark.parametrize("images, labels, message", [
    (torch.zeros(6, 32, 32, dtype=torch.uint8), torch.zeros(6, dtype=torch.long), r"shape \(6, 32, 32\)"),
    (torch.zeros(6, 28, 28, dtype=torch.int32), torch.zeros(6, dtype=torch.long), "dtype torch.int32"),
    (torch.full((6, 28, 28), 3.0), torch.zeros(6, dtype=torch.long), "un-normalised"),
    (torch.full((6, 28, 28), float("nan")), torch.zeros(6, dtype=torch.long), "6 of 6 images hold NaN"),
    (torch.cat([torch.zeros(3, 28, 28), torch.full((3, 28, 28), float("inf"))]), torch.zeros(6, dtype=torch.long),
     "3 of 6 images hold NaN or infinite"),
    (torch.zeros(6, 28, 28, dtype=torch.uint8), torch.zeros(6, 10), "not one-hot"),
    (torch.zeros(6, 28, 28, dtype=torch.uint8), torch.zeros(6, dtype=torch.float32), "dtype torch.float32"),
    (torch.zeros(6, 28, 28, dtype=torch.uint8), torch.zeros(5, dtype=torch.long), "6 images but 5 labels"),
    (torch.zeros(6, 28, 28, dtype=torch.uint8), torch.arange(6) + 5, "expected digits 0..9"),
])
def test_malformed_pth_files_raise_clear_errors(tmp_path, images, labels, message):
    _write_pth(tmp_path, images, labels)
    with pytest.raises(DataError, match=message):
        mnist.load_mnist(tmp_path)


def test_pth_variants_that_are_accepted(tmp_path):
    images = torch.rand(6, 1, 28, 28)  # float in [0, 1] with a channel axis
    _write_pth(tmp_path, images, torch.tensor([0, 1, 2, 3, 4, 5], dtype=torch.uint8))
    data = mnist.load_mnist(tmp_path, valid_fraction=0)
    assert data.train_images.dtype == torch.uint8 and data.train_images.shape == (6, 28, 28)
    assert data.train_labels.dtype == torch.long
    assert torch.equal(data.train_images, images[:, 0].mul(255).round().to(torch.uint8))


def test_pth_that_is_not_a_tensor_or_missing(tmp_path):
    _write_pth(tmp_path, torch.zeros(2, 28, 28, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))
    torch.save({"data": torch.zeros(2)}, tmp_path / "train_data.pth")
    with pytest.raises(DataError, match="holds a dict"):
        mnist.load_mnist(tmp_path)
    (tmp_path / "train_data.pth").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot be read"):
        mnist.load_mnist(tmp_path)
    (tmp_path / "train_data.pth").unlink()
    with pytest.raises(DataError, match="train_data.pth is missing"):
        mnist.load_mnist(tmp_path, source="pth")


def test_split_is_seeded_disjoint_and_one_sixth_by_default():
    train, valid = mnist.split_indices(600)
    assert len(valid) == 100 and len(train) == 500
    assert set(train.tolist()).isdisjoint(valid.tolist())
    assert sorted(train.tolist() + valid.tolist()) == list(range(600))
    again_train, again_valid = mnist.split_indices(600)
    assert torch.equal(train, again_train) and torch.equal(valid, again_valid)
    assert not torch.equal(valid, mnist.split_indices(600, seed=1)[1])
    with pytest.raises(ValueError, match="valid_fraction"):
        mnist.split_indices(10, valid_fraction=1.0)


def test_load_mnist_split_keeps_test_whole_and_pairs_labels(synthetic_root):
    data = mnist.load_mnist(synthetic_root, seed=4)
    images, labels = mnist.load_idx_split(synthetic_root, "train")
    assert data.sizes() == {"train": 200, "val": 40, "test": 60}
    _, valid = mnist.split_indices(240, seed=4)
    assert torch.equal(data.val_images, images[valid]) and torch.equal(data.val_labels, labels[valid])
    assert data.head(train=10, test=5).sizes() == {"train": 10, "val": 40, "test": 5}


def _serve_archives(folder: Path, synthetic_root: Path) -> dict[str, str]:
    """The synthetic .gz files as a local 'mirror' and their md5 sums."""
    folder.mkdir(parents=True)
    sums = {}
    for path in (synthetic_root / "MNIST" / "raw").glob("*.gz"):
        shutil.copy(path, folder / path.name)
        sums[path.name] = file_digest(path, "md5")
    return sums


def test_download_tries_mirrors_in_order_checks_md5_and_unpacks(tmp_path, synthetic_root):
    sums = _serve_archives(tmp_path / "www" / "good", synthetic_root)
    bad = tmp_path / "www" / "bad"
    bad.mkdir()
    for name in sums:  # a mirror that serves corrupted archives
        (bad / name).write_bytes(gzip.compress(b"wrong"))
    with serve_folder(tmp_path / "www") as url:
        mirrors = [url + "absent/", url + "bad/", url + "good/"]
        folder = mnist.download_mnist(tmp_path / "root", mirrors=mirrors, checksums=sums)
    assert folder == tmp_path / "root" / "MNIST" / "raw"
    data = mnist.load_mnist(tmp_path / "root")
    assert data.sizes() == {"train": 200, "val": 40, "test": 60}
    assert not list(folder.glob(".*"))  # no temp files left behind


def test_download_failure_lists_every_mirror(tmp_path, synthetic_root):
    sums = _serve_archives(tmp_path / "www" / "good", synthetic_root)
    wrong = {name: "0" * 32 for name in sums}
    with serve_folder(tmp_path / "www") as url, pytest.raises(DataError) as err:
        mnist.download_mnist(tmp_path / "root", mirrors=[url + "absent/", url + "good/"], checksums=wrong)
    assert "checksum mismatch" in str(err.value) and "download the file by hand" in str(err.value)
    assert f"{url}absent/" in str(err.value) and "404" in str(err.value)  # every mirror tried is listed


def test_official_checksums_and_mirrors_are_the_published_ones():
    assert mnist.MIRRORS[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert mnist.GZ_MD5["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert set(mnist.GZ_MD5) == {f"{n}.gz" for names in mnist.IDX_FILES.values() for n in names}


@pytest.mark.parametrize("form", ["pth", "idx"])
def test_a_split_file_with_no_images_is_refused_naming_it(form, tmp_path):
    images, labels = mnist.synthetic_digits(20)
    if form == "pth":
        mnist.save_pth(tmp_path, "train", images, labels)
        torch.save(images[:0], tmp_path / "test_data.pth")
        torch.save(labels[:0], tmp_path / "test_labels.pth")
        empty = tmp_path / "test_data.pth"
    else:
        mnist.write_synthetic_mnist(tmp_path, n_train=20, n_test=10)
        empty = mnist.raw_folder(tmp_path) / "t10k-images-idx3-ubyte"
        mnist.write_idx(empty, images[:0])
        mnist.write_idx(mnist.raw_folder(tmp_path) / "t10k-labels-idx1-ubyte", labels[:0].to(torch.uint8))
    with pytest.raises(DataError, match=re.escape(str(empty)) + ".* 0 images"):
        mnist.load_mnist(tmp_path)


def test_nan_pixels_are_refused_at_load_naming_the_file(tmp_path):
    from labkit import runner
    from labkit.lab import get_lab

    images, labels = mnist.synthetic_digits(20)
    mnist.save_pth(tmp_path, "test", images, labels)
    pixels = images.float() / 255
    pixels[3, 4, 5] = float("inf")
    torch.save(pixels, tmp_path / "train_data.pth")
    torch.save(labels, tmp_path / "train_labels.pth")
    lab = get_lab("mnist")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "train_data.pth")) + ".*NaN or infinite"):
        runner.load_data(lab, lab.config("smoke", data=str(tmp_path)))
