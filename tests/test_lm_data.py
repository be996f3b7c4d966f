"""WikiText-2 reader, vocabulary, batchify and bptt windows (synthetic files; real counts when ../shared exists)."""

from __future__ import annotations

import pytest
import torch

from labkit.errors import DataError, UsageError
from labkit.files import file_digest
from labkit.labs.lm import data as wikitext
from labkit.labs.lm.data import (
    EOS,
    BpttBatches,
    Vocabulary,
    batchify,
    read_corpus,
    write_synthetic_wikitext,
)
from tests.serve import serve_folder


def _write(root, **files):
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / f"{name}.txt").write_text(text)
    return root


def test_vocabulary_and_tokens_follow_the_example(tmp_path):
    root = _write(tmp_path / "wt", train=" a b a \n\n c a\n", valid=" b d \n", test=" e\n")
    corpus = read_corpus(root, order="appearance")
    # split on whitespace, <eos> at each line end (also for the blank line), ids by first appearance
    assert corpus.vocab.itos == ["a", "b", EOS, "c", "d", "e"]
    assert corpus.vocab.decode(corpus["train"]) == ["a", "b", "a", EOS, EOS, "c", "a", EOS]
    assert corpus.num_tokens("valid") == 3 and corpus.num_tokens("test") == 2


def test_frequency_order_keeps_words_and_sorts_by_training_counts(tmp_path):
    root = _write(tmp_path / "wt", train=" a b a \n\n c a\n", valid=" b d \n", test=" e\n")
    by_appearance = read_corpus(root, order="appearance")
    by_frequency = read_corpus(root)
    assert by_frequency.vocab.itos == ["a", EOS, "b", "c", "d", "e"]
    for split in ("train", "valid", "test"):  # same text, only the numbering changes
        assert by_frequency.vocab.decode(by_frequency[split]) == by_appearance.vocab.decode(by_appearance[split])
    counts = by_frequency.counts("train")
    assert counts.tolist() == [3, 3, 1, 1, 0, 0]


def test_synthetic_corpus_reads_back(tmp_path):
    root = write_synthetic_wikitext(tmp_path / "wt", tokens=(3000, 600, 600), vocab_size=40)
    corpus = read_corpus(root)
    assert 10 < len(corpus.vocab) <= 40 + 2  # + <eos> and the headings' "="
    assert wikitext.UNK in corpus.vocab and EOS in corpus.vocab
    assert 3000 <= corpus.num_tokens("train") < 3100
    # WikiText's look: lines start with a space, headings like " = Title = "
    lines = (root / "train.txt").read_text().splitlines()
    assert all(line.startswith(" ") for line in lines)
    assert any(line.startswith(" = ") and line.endswith(" = ") for line in lines)
    # the same seed writes the same text
    again = write_synthetic_wikitext(tmp_path / "again", tokens=(3000, 600, 600), vocab_size=40)
    assert (again / "train.txt").read_text() == (root / "train.txt").read_text()


def test_batchify_rows_are_contiguous_slices():
    ids = torch.arange(26)
    data = batchify(ids, 4)
    assert data.shape == (4, 6)  # 2 tokens dropped
    assert data[1].tolist() == list(range(6, 12))
    with pytest.raises(DataError, match="too short"):
        batchify(torch.arange(5), 4)


def test_bptt_windows_shift_targets_and_cover_the_stream():
    batches = BpttBatches(torch.arange(4 * 11), batch_size=4, bptt=3)
    windows = list(batches)
    assert len(batches) == len(windows) == 4  # 10 usable columns: 3 + 3 + 3 + 1
    assert [x.shape[1] for x, _ in windows] == [3, 3, 3, 1]
    for x, y in windows:
        assert torch.equal(y, x + 1)  # next-token targets
    assert torch.equal(torch.cat([x for x, _ in windows], 1)[0], torch.arange(10))
    assert batches.num_tokens == 4 * 10
    fixed = BpttBatches(torch.arange(4 * 11), batch_size=4, bptt=3, drop_last=True)
    assert len(fixed) == len(list(fixed)) == 3


def test_missing_train_split_says_how_to_train_on_valid(tmp_path):
    root = _write(tmp_path / "wt", valid=" a b\n", test=" b c\n")
    with pytest.raises(DataError, match="train.txt missing") as err:
        read_corpus(root)
    assert "--train-split valid" in str(err.value)
    corpus = read_corpus(root, splits=("valid", "test"))  # the explicit way
    assert set(corpus.splits) == {"valid", "test"}
    with pytest.raises(UsageError, match="was not read"):
        corpus["train"]


def test_no_files_and_empty_file_errors(tmp_path):
    with pytest.raises(DataError, match="data_prep/wikitext2.py"):
        read_corpus(tmp_path / "nothing")
    root = _write(tmp_path / "wt", train="", valid=" a\n", test=" b\n")
    with pytest.raises(DataError, match="empty"):
        read_corpus(root)


def test_vocabulary_encode_maps_unknown_words_to_unk():
    vocab = Vocabulary(["the", "<unk>", "cat"])
    ids, unknown = vocab.encode(["the", "dog", "cat"])
    assert ids.tolist() == [0, 1, 2] and unknown == ["dog"]
    with pytest.raises(DataError, match="no <unk>"):
        Vocabulary(["a"]).encode(["b"])
    assert Vocabulary(vocab.to_list()).itos == vocab.itos


def test_verify_split_checks_sha256(tmp_path):
    path = tmp_path / "valid.txt"
    path.write_text(" not the real file\n")
    with pytest.raises(DataError, match="SHA-256"):
        wikitext.verify_split(path, "valid")


@pytest.mark.shared
def test_real_wikitext2_token_counts(shared_datasets):
    root = shared_datasets / "wikitext-2"
    corpus = read_corpus(root, splits=("valid", "test"))
    assert corpus.num_tokens("valid") == wikitext.NUM_TOKENS["valid"] == 217_646
    assert corpus.num_tokens("test") == wikitext.NUM_TOKENS["test"] == 245_569
    for split in ("valid", "test"):
        wikitext.verify_split(root / f"{split}.txt", split)  # the recorded checksums match
    assert corpus.most_common("valid", 3)[0] == ("the", 12_639)
    if (root / "train.txt").exists():  # the full release: the example's vocabulary size
        assert len(read_corpus(root).vocab) == wikitext.VOCAB_SIZE


def _zip_of(folder, target):
    import zipfile

    with zipfile.ZipFile(target, "w") as zf:
        for split in wikitext.SPLITS:
            zf.write(folder / f"{split}.txt", wikitext.ARCHIVE_MEMBERS[split])
    return target


def test_download_checks_the_archive_and_falls_back_to_single_files(tmp_path, monkeypatch):
    """The download path offline: a served archive is MD5-checked, extracted and verified."""
    source = write_synthetic_wikitext(tmp_path / "www" / "files")
    good = _zip_of(source, tmp_path / "www" / "good.zip")
    (tmp_path / "www" / "bad.zip").write_bytes(b"not a zip")
    monkeypatch.setattr(wikitext, "ARCHIVE_MD5", file_digest(good, "md5"))
    monkeypatch.setattr(wikitext, "FILE_SHA256", {s: file_digest(source / f"{s}.txt") for s in ("valid", "test")})
    lines, tokens = wikitext._count_lines_tokens(source / "train.txt")
    monkeypatch.setitem(wikitext.NUM_LINES, "train", lines)
    monkeypatch.setitem(wikitext.NUM_TOKENS, "train", tokens)

    with serve_folder(tmp_path / "www") as url:
        monkeypatch.setattr(wikitext, "ARCHIVE_URLS", (url + "absent.zip", url + "good.zip"))
        monkeypatch.setattr(wikitext, "FILE_URL", url + "files/{split}.txt")
        folder = wikitext.download_wikitext2(tmp_path / "a")
        assert (folder / "train.txt").read_text() == (source / "train.txt").read_text()
        assert not (folder / "wikitext-2-v1.zip").exists()

        # a corrupt archive (wrong MD5) is rejected and the single files are used instead
        monkeypatch.setattr(wikitext, "ARCHIVE_URLS", (url + "bad.zip",))
        folder = wikitext.download_wikitext2(tmp_path / "b")
        assert read_corpus(folder).num_tokens("test") == read_corpus(source).num_tokens("test")
        assert not list(folder.glob(".*"))  # no partial downloads left behind
        (folder / "train.txt").write_text(" damaged\n")
        wikitext.download_wikitext2(folder, force=True)  # force: downloaded again, not kept
        assert (folder / "train.txt").read_text() == (source / "train.txt").read_text()

        # nothing reachable: a clear error that says what to do
        monkeypatch.setattr(wikitext, "FILE_URL", url + "nothing/{split}.txt")
        with pytest.raises(DataError, match="by hand"):
            wikitext.download_wikitext2(tmp_path / "c")
