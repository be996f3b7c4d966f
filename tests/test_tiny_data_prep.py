"""data_prep.tiny_imagenet: checksum-verified download, safe extraction, the ImageFolder val folder."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from data_prep import tiny_imagenet as prep
from labkit.errors import DataError
from labkit.labs.tiny_imagenet.data import TinyImageNet, write_synthetic_tiny_imagenet
from tests.serve import serve_folder


@pytest.fixture
def zipped(tmp_path) -> tuple[Path, str]:
    folder = write_synthetic_tiny_imagenet(tmp_path / "src", n_classes=2, n_train_per_class=2,
                                           n_val_per_class=2, seed=0)
    archive = Path(shutil.make_archive(str(tmp_path / "www" / "tiny-imagenet-200"), "zip", folder.parent,
                                       "tiny-imagenet-200"))
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_checks_md5_and_extracts_once(zipped, tmp_path, capsys):
    archive, md5 = zipped
    dest = tmp_path / "dest"
    with serve_folder(archive.parent) as url:
        assert prep.main(["--dest", str(dest), "--url", url + archive.name, "--md5", md5,
                          "--val-folder", str(tmp_path / "val")]) == 0
    assert len(TinyImageNet(dest, "train")) == 4
    assert not (dest / "tiny-imagenet-200.zip").exists()  # the zip is removed after extraction
    assert len(list((tmp_path / "val").rglob("*.JPEG"))) == 4
    prep.main(["--dest", str(dest), "--url", "http://invalid.invalid/x.zip"])  # already there: no download
    assert "is ready" in capsys.readouterr().out


def test_wrong_checksum_is_refused(zipped, tmp_path):
    archive, _ = zipped
    with serve_folder(archive.parent) as url, pytest.raises(DataError, match="checksum mismatch.*expected 0+"):
        prep.prepare(tmp_path / "dest", url + archive.name, "0" * 32)
    assert not list((tmp_path / "dest").iterdir())  # no partial download, nothing extracted


def test_unreachable_url_gives_a_clear_error(tmp_path):
    with serve_folder(tmp_path) as url, pytest.raises(DataError, match="(?s)could not download .*file by hand"):
        prep.prepare(tmp_path / "dest", url + "missing.zip", None)


def test_zip_members_outside_the_destination_are_refused(tmp_path):
    (tmp_path / "www").mkdir()
    archive = tmp_path / "www" / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escaped.txt", "boo")
    with serve_folder(archive.parent) as url, pytest.raises(DataError, match="points outside"):
        prep.prepare(tmp_path / "dest", url + archive.name, None)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "dest" / "escaped.txt").exists()
