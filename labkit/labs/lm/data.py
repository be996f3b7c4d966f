"""WikiText-2 as PyTorch's word_language_model example reads it: `train.txt`, `valid.txt`, `test.txt`, one
paragraph a line, each line split on whitespace and ended by `<eos>` (33,278 words over the three files)."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from labkit import config
from labkit.errors import DataError, UsageError
from labkit.files import atomic_write, fetch, file_digest, read_utf8

SPLITS: tuple[str, ...] = ("train", "valid", "test")
EOS = "<eos>"
UNK = "<unk>"
FOLDER = "wikitext-2"

#: Facts of the real data, used to check downloads and in tests.
VOCAB_SIZE = 33_278
NUM_TOKENS = {"train": 2_088_628, "valid": 217_646, "test": 245_569}  # with <eos>
NUM_LINES = {"train": 36_718, "valid": 3_760, "test": 4_358}

#: The original release (the example's text as wiki.*.tokens); MD5 as published by torchtext.
ARCHIVE_URLS = ("https://wikitext.smerity.com/wikitext-2-v1.zip",
                "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip")
ARCHIVE_MD5 = "542ccefacc6c27f945fb54453812b3cd"
ARCHIVE_MEMBERS = {s: f"wikitext-2/wiki.{s}.tokens" for s in SPLITS}

#: Fallback: the example's own copies, file by file.
FILE_URL = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/{split}.txt"
#: SHA-256 of the example's valid.txt and test.txt; train.txt is checked by its line and token counts.
FILE_SHA256 = {
    "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
    "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
}


# --------------------------------------------------------------------------- vocabulary


class Vocabulary:
    """Words <-> integer ids, in a fixed order (`itos[i]` is the word with id `i`)."""

    def __init__(self, words: Iterable[str] = ()) -> None:
        self.itos: list[str] = []
        self.stoi: dict[str, int] = {}
        for word in words:
            self.add(word)

    def add(self, word: str) -> int:
        """The id of `word`, adding it at the end when new."""
        index = self.stoi.get(word)
        if index is None:
            index = self.stoi[word] = len(self.itos)
            self.itos.append(word)
        return index

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: object) -> bool:
        return word in self.stoi

    def __getitem__(self, word: str) -> int:
        try:
            return self.stoi[word]
        except KeyError:
            raise KeyError(f"{word!r} is not in the vocabulary of {len(self)} words") from None

    @property
    def unk_index(self) -> int | None:
        return self.stoi.get(UNK)

    @property
    def eos_index(self) -> int | None:
        return self.stoi.get(EOS)

    def encode(self, words: Sequence[str]) -> tuple[torch.Tensor, list[str]]:
        """Ids of `words` as a 1-D LongTensor (unknown words as `<unk>`), and the unknown words."""
        unknown = [w for w in words if w not in self.stoi]
        if unknown and self.unk_index is None:
            raise DataError(f"words not in the vocabulary and no {UNK} to map them to: {unknown[:5]}")
        unk = self.unk_index
        ids = [self.stoi.get(w, unk) for w in words]
        return torch.tensor(ids, dtype=torch.long), unknown

    def decode(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        return [self.itos[int(i)] for i in ids]

    def to_list(self) -> list[str]:
        return list(self.itos)

    def __repr__(self) -> str:
        head = ", ".join(repr(w) for w in self.itos[:5])
        return f"Vocabulary({len(self)} words: {head}, ...)"


# --------------------------------------------------------------------------- reading


def _file_lines(text: str) -> list[str]:
    """The lines a text-mode file iterates (universal newlines; only newlines split, unlike str.splitlines)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


@dataclass
class Corpus:
    """A vocabulary and, per split, the whole text as a 1-D tensor of word ids."""

    vocab: Vocabulary
    splits: dict[str, torch.Tensor] = field(default_factory=dict)
    root: Path | None = None

    def __getitem__(self, split: str) -> torch.Tensor:
        if split not in self.splits:
            raise UsageError(f"split {split!r} was not read; this corpus has {sorted(self.splits)}. "
                             f"Pass splits=(...{split!r}...) to read_corpus.")
        return self.splits[split]

    def num_tokens(self, split: str) -> int:
        return int(self[split].numel())

    def counts(self, split: str) -> torch.Tensor:
        """How often each vocabulary id occurs in `split` (length `len(vocab)`)."""
        return torch.bincount(self[split], minlength=len(self.vocab))

    def most_common(self, split: str, n: int = 20) -> list[tuple[str, int]]:
        counts = self.counts(split)
        top = torch.argsort(counts, descending=True, stable=True)[:n]
        return [(self.vocab.itos[i], int(counts[i])) for i in top.tolist()]


def _split_path(root: Path, split: str) -> Path:
    return root / f"{split}.txt"


def resolve_root(root: str | Path | None = None) -> Path:
    """The folder of the `.txt` files: `root` or its `wikitext-2/`; without `root`, `<data_root>/wikitext-2`
    when it has files, else the shared read-only copy, else `<data_root>/wikitext-2` (to download into)."""
    if root is not None:
        root = Path(root).expanduser()
        if not any(_split_path(root, s).exists() for s in SPLITS) and (root / FOLDER).is_dir():
            return root / FOLDER
        return root
    local = config.data_root() / FOLDER
    if any(_split_path(local, s).exists() for s in SPLITS):
        return local
    shared = config.shared_datasets()
    if shared is not None and (shared / FOLDER).is_dir():
        return shared / FOLDER
    return local


def _check_files(root: Path, splits: Sequence[str]) -> None:
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise UsageError(f"unknown split(s) {unknown}: expected some of {list(SPLITS)}")
    missing = [s for s in splits if not _split_path(root, s).is_file()]
    if missing:
        present = [s for s in SPLITS if _split_path(root, s).is_file()]
        names = ", ".join(f"{s}.txt" for s in missing)
        if not present:
            raise DataError(f"no WikiText files in {root} (expected train.txt, valid.txt, test.txt). Download them "
                            "with `python data_prep/wikitext2.py` (or labkit.labs.lm.data.download_wikitext2()), or "
                            "point LABKIT_DATA / the root argument at a folder that has them.")
        message = f"{names} missing from {root}; it has {', '.join(f'{s}.txt' for s in present)}."
        if "train" in missing and {"valid", "test"} <= set(present):
            message += (" This is the layout of the shared read-only copy (../shared/datasets/wikitext-2), which "
                        "omits train.txt. To train anyway, train on valid.txt explicitly and evaluate on test.txt: "
                        "read_corpus(root, splits=('valid', 'test')) and use corpus['valid'] as the training stream "
                        "(Lab 05's laptop size: `labkit run lm --size laptop`, or SIZE = \"laptop\" in the notebook; "
                        "at any size `--train-split valid --val-split valid --test-split test` validates on the last "
                        "10% of valid.txt), and say so when you report numbers. Or download the full data with "
                        "`python data_prep/wikitext2.py`.")
        else:
            message += " Download the files with `python data_prep/wikitext2.py`."
        raise DataError(message)
    for s in splits:
        if _split_path(root, s).stat().st_size == 0:
            raise DataError(f"{_split_path(root, s)} is empty (0 bytes): the download or copy was probably "
                            "interrupted. Delete it and run `python data_prep/wikitext2.py` again.")


def read_corpus(root: str | Path | None = None, splits: Sequence[str] = SPLITS, order: str = "frequency") -> Corpus:
    """The split files as a `Corpus` with one vocabulary. `order="appearance"` numbers words as the example does;
    "frequency" (default) by their count in the first split read, ties by appearance: the order an adaptive
    softmax needs (its clusters are ranges of ids)."""
    if order not in ("frequency", "appearance"):
        raise UsageError(f"order must be 'frequency' or 'appearance', got {order!r}")
    if isinstance(splits, str):
        splits = (splits,)
    folder = resolve_root(root)
    _check_files(folder, splits)
    vocab = Vocabulary()
    streams: dict[str, torch.Tensor] = {}
    for split in splits:
        ids: list[int] = []
        words = 0
        for line in _file_lines(read_utf8(_split_path(folder, split), f"WikiText-2 {split}")):
            tokens = line.split()  # as the example: whitespace-separated words, then <eos>
            words += len(tokens)
            ids.extend(vocab.add(w) for w in [*tokens, EOS])
        if not words:
            raise DataError(f"{_split_path(folder, split)} has no tokens (only blank lines): the copy is damaged "
                            "or not WikiText. Replace it (`python data_prep/wikitext2.py`).")
        streams[split] = torch.tensor(ids, dtype=torch.long)
    if order == "frequency":
        first = streams[splits[0]]
        counts = torch.bincount(first, minlength=len(vocab))
        new_order = torch.argsort(-counts, stable=True)
        remap = torch.empty_like(new_order)
        remap[new_order] = torch.arange(len(vocab))
        vocab = Vocabulary(vocab.itos[i] for i in new_order.tolist())
        streams = {s: remap[t] for s, t in streams.items()}
    return Corpus(vocab=vocab, splits=streams, root=folder)


# --------------------------------------------------------------------------- batching


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A 1-D stream as `batch_size` contiguous rows `(batch_size, n)`, the remainder dropped (the example's
    layout, transposed)."""
    if ids.dim() != 1:
        raise UsageError(f"batchify expects a 1-D stream of ids, got shape {tuple(ids.shape)}")
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}")
    n = ids.numel() // batch_size
    if n < 2:
        raise DataError(f"a stream of {ids.numel()} tokens is too short for batch_size {batch_size}: each row needs "
                        "at least 2 tokens (an input and its next-word target). Use a smaller batch.")
    return ids[: n * batch_size].reshape(batch_size, n)


class BpttBatches:
    """`(input, target)` windows of `t <= bptt` tokens over a batchified stream (`target` shifted by one), in
    order: row `b` of a batch continues row `b` of the previous one (what a carried LSTM state needs).
    `drop_last` drops a shorter final window."""

    def __init__(self, ids: torch.Tensor, batch_size: int, bptt: int, device: torch.device | str | None = None,
                 drop_last: bool = False) -> None:
        if bptt < 1:
            raise UsageError(f"bptt must be at least 1, got {bptt}")
        self.data = batchify(ids, batch_size)
        if device is not None:
            self.data = self.data.to(device)
        self.batch_size = batch_size
        self.bptt = bptt
        self.drop_last = drop_last

    def _starts(self) -> range:
        usable = self.data.size(1) - 1  # the last column is only ever a target
        if self.drop_last:
            return range(0, usable - self.bptt + 1, self.bptt)
        return range(0, usable, self.bptt)

    def __len__(self) -> int:
        return len(self._starts())

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        usable = self.data.size(1) - 1
        for start in self._starts():
            t = min(self.bptt, usable - start)
            yield self.data[:, start : start + t], self.data[:, start + 1 : start + 1 + t]

    @property
    def num_tokens(self) -> int:
        """Target tokens per epoch."""
        return self.batch_size * sum(min(self.bptt, self.data.size(1) - 1 - s) for s in self._starts())

    def __repr__(self) -> str:
        return f"BpttBatches({len(self)} batches of {self.batch_size} x {self.bptt} tokens, device={self.data.device})"


# --------------------------------------------------------------------------- download


def _count_lines_tokens(path: Path) -> tuple[int, int]:
    lines = tokens = 0
    with open(path, encoding="utf8") as handle:
        for line in handle:
            lines += 1
            tokens += len(line.split()) + 1
    return lines, tokens


def verify_split(path: Path, split: str) -> None:
    """Check a downloaded split file: SHA-256 where published, else its line and token counts."""
    if split in FILE_SHA256:
        got = file_digest(path, "sha256")
        if got != FILE_SHA256[split]:
            raise DataError(f"{path} has SHA-256 {got}, expected {FILE_SHA256[split]}: the file is corrupt or a "
                            "different version. Delete it and download again.")
        return
    lines, tokens = _count_lines_tokens(path)
    if (lines, tokens) != (NUM_LINES[split], NUM_TOKENS[split]):
        raise DataError(f"{path} has {lines} lines and {tokens} tokens, expected {NUM_LINES[split]} and "
                        f"{NUM_TOKENS[split]}: the file is corrupt or a different version. Delete it and download "
                        "again.")


def _from_archive(folder: Path, splits: Sequence[str]) -> None:
    archive = fetch(ARCHIVE_URLS, folder, "wikitext-2-v1.zip", md5=ARCHIVE_MD5)
    with zipfile.ZipFile(archive) as zf:
        for split in splits:
            with zf.open(ARCHIVE_MEMBERS[split]) as src, atomic_write(_split_path(folder, split)) as dst:
                shutil.copyfileobj(src, dst)
    archive.unlink()


def download_wikitext2(root: str | Path | None = None, splits: Sequence[str] = SPLITS, force: bool = False) -> Path:
    """Download WikiText-2 into `root` (default `<data_root>/wikitext-2`): the zip release, else the example's
    files one by one, each then verified; existing files are kept unless `force`."""
    folder = Path(root).expanduser() if root is not None else config.data_root() / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    todo = [s for s in splits if force or not _split_path(folder, s).is_file()]
    if todo:
        try:
            _from_archive(folder, todo)
        except (DataError, OSError, zipfile.BadZipFile) as archive_error:
            print(f"[wikitext] archive download failed ({archive_error}); trying single files")
            for split in todo:
                if force:  # a file without a published checksum would otherwise be kept as it is
                    _split_path(folder, split).unlink(missing_ok=True)
                fetch(FILE_URL.format(split=split), folder, f"{split}.txt", sha256=FILE_SHA256.get(split),
                      hint=f"No internet here? Copy train.txt, valid.txt and test.txt of WikiText-2 into {folder} "
                           f"(the archive {ARCHIVE_URLS[0]} holds them as wikitext-2/wiki.*.tokens).")
    for split in splits:
        verify_split(_split_path(folder, split), split)
    return folder


# --------------------------------------------------------------------------- synthetic data

_COMMON = [
    "the", ",", ".", "of", "and", "in", "to", "a", "<unk>", "was", "@-@", "on", "as", "that", "for", "with", "by",
    "is", "his", "at", "from", "it", "he", "were", "an", "had", "which", "be", "are", "this", "their", "first",
    "but", "also", "its", "her", "has", "one", "after", "two", "new", "they", "not", "or", "been", "who", "she",
    "most", "all", "into", "more", "time", "when", "there", "other",
]
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "da", "fi", "go", "hu", "pe")


def _synthetic_words(vocab_size: int) -> list[str]:
    """`vocab_size` distinct words: common English ones first, then made-up ones."""
    words = list(dict.fromkeys(_COMMON))[: max(vocab_size, 0)]
    n = 0
    seen = set(words)
    while len(words) < vocab_size:
        k, name = n, ""
        while True:
            name += _SYLLABLES[k % len(_SYLLABLES)]
            k //= len(_SYLLABLES)
            if k == 0:
                break
        if name not in seen:
            seen.add(name)
            words.append(name)
        n += 1
    return words


def write_synthetic_wikitext(root: str | Path, tokens: tuple[int, int, int] = (6000, 1200, 1200),
                             vocab_size: int = 60, successors: int = 3, seed: int = 0, noise: float = 0.0) -> Path:
    """Write `train.txt`, `valid.txt`, `test.txt` (about `tokens` tokens each) of made-up text in WikiText's layout.

    One random Markov chain: each word is followed by one of `successors` words, mostly Zipf-popular ones, so a
    model can learn it (perplexity from about `vocab_size` down to about `successors`); `noise` is the share of
    words drawn uniformly instead (a long tail of rare words)."""
    if vocab_size < 8:
        raise UsageError(f"vocab_size must be at least 8, got {vocab_size}")
    if not 1 <= successors < vocab_size:
        raise UsageError(f"successors must be in [1, vocab_size), got {successors}")
    rng = np.random.default_rng(seed)
    words = _synthetic_words(vocab_size)
    popularity = 1.0 / np.arange(1, vocab_size + 1) ** 1.1
    popularity /= popularity.sum()
    table = rng.choice(vocab_size, size=(vocab_size, successors), p=popularity)
    table[:, 0] = rng.permutation(vocab_size)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, budget in zip(SPLITS, tokens):
        lines: list[str] = []
        count = 0
        current = int(rng.choice(vocab_size, p=popularity))
        while count < budget:
            if rng.random() < 0.1:  # a heading, framed by blank lines, as in WikiText
                title = " ".join(words[int(i)] for i in rng.choice(vocab_size, size=2, p=popularity))
                lines += [" ", f" = {title} = ", " "]
                count += 3 + 4
                continue
            length = int(rng.integers(8, 30))
            picks = rng.integers(0, successors, size=length)
            random_words = rng.integers(0, vocab_size, size=length)
            is_noise = rng.random(length) < noise
            sentence = []
            for pick, random_word, noisy in zip(picks, random_words, is_noise):
                current = int(random_word) if noisy else int(table[current, pick])
                sentence.append(words[current])
            lines.append(" " + " ".join(sentence) + " ")
            count += length + 1
        _split_path(root, split).write_text("\n".join(lines) + "\n", encoding="utf8")
    return root
