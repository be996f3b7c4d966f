"""Bad files inside datasets are labkit errors that name the file (and line), never raw tracebacks."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from labkit.errors import LabkitError
from labkit.labs.lm.data import read_corpus, write_synthetic_wikitext
from labkit.labs.tiny_imagenet.data import TinyImageNet, write_synthetic_tiny_imagenet


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_synthetic_tiny_imagenet(tmp_path / "data", n_classes=3, n_train_per_class=4, n_val_per_class=2)


@pytest.mark.parametrize("content", [b"", b"this is not a JPEG", b"\xff\xd8\xff\xe0 truncated"])
def test_an_unreadable_image_is_named(tiny: Path, tmp_path: Path, content: bytes):
    victim = min(tiny.glob("train/*/images/*.JPEG"))
    victim.write_bytes(content)
    with pytest.raises(LabkitError, match=f"could not read .*{victim.name} \\({len(content)} bytes\\) as an image"):
        TinyImageNet(tiny, "train").tensors(cache_dir=tmp_path / "cache", verbose=False)


@pytest.mark.parametrize("encoding, message", [("utf-16", "is UTF-16 text"),
                                               ("latin-1", r":\d+ \(the val labels\) is not UTF-8")])
def test_annotations_in_another_encoding_name_the_file_and_line(tiny: Path, encoding: str, message: str):
    annotations = tiny / "val" / "val_annotations.txt"
    text = annotations.read_text() + "café\n"
    annotations.write_bytes(text.encode(encoding))
    with pytest.raises(LabkitError, match=message):
        TinyImageNet(tiny, "val")


def test_a_latin1_wikitext_line_is_named(tmp_path: Path):
    folder = write_synthetic_wikitext(tmp_path / "wt")
    path = next(Path(folder).rglob("valid.txt"))
    lines = path.read_text().splitlines(keepends=True)
    path.write_bytes("".join(lines[:3]).encode() + "naïve\n".encode("latin-1") + "".join(lines[3:]).encode())
    with pytest.raises(LabkitError, match=r"valid.txt:4 \(WikiText-2 valid\) is not UTF-8"):
        read_corpus(path.parent)


def test_wikitext_lines_split_like_a_text_file(tmp_path: Path):
    """Reading through read_utf8 keeps the example's tokens: only newlines split (\\r\\n too), not \\x0b or \\u2028."""
    folder = write_synthetic_wikitext(tmp_path / "wt")
    root = Path(next(Path(folder).rglob("train.txt")).parent)
    for name in ("train.txt", "valid.txt", "test.txt"):
        (root / name).write_bytes(b"a b\r\nc\x0bd \xe2\x80\xa8 e\n\nf\n")
    corpus = read_corpus(root)
    words = [corpus.vocab.itos[i] for i in corpus.splits["train"].tolist()]
    assert words == ["a", "b", "<eos>", "c", "d", "e", "<eos>", "<eos>", "f", "<eos>"]


def test_a_link_out_of_the_dataset_is_reported(tiny: Path, tmp_path: Path):
    victim = min(tiny.glob("train/*/images/*.JPEG"))
    outside = tmp_path / "elsewhere.JPEG"
    outside.write_bytes(victim.read_bytes())
    victim.unlink()
    victim.symlink_to(outside)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TinyImageNet(tiny, "train")
    assert any("symbolic links to files outside the dataset folder" in str(w.message) and victim.name in str(w.message)
               for w in caught)


def test_a_class_without_train_images_is_reported(tiny: Path):
    folder = min((tiny / "train").iterdir()) / "images"
    for image in folder.iterdir():
        image.unlink()
    with pytest.warns(UserWarning, match=r"1 of 3 classes have no train images .*the model never sees them"):
        TinyImageNet(tiny, "train")
