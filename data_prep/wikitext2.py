"""Prepare WikiText-2 for Lab 05: download the token files (checksummed), or write a synthetic stand-in.

    python data_prep/wikitext2.py                  # download into $LABKIT_DATA/wikitext-2
    python data_prep/wikitext2.py --root ~/data    # into ~/data/wikitext-2
    python data_prep/wikitext2.py --synthetic      # tiny learnable corpus in the same layout

The result is `<root>/wikitext-2/{train,valid,test}.txt` as PyTorch's word_language_model example
lays it out (no torchtext). The download tries the original release archive (MD5-checked) and then
the example's own copies; each file is verified (SHA-256, or line and token counts where no
checksum is published). The script ends by reading the files and printing a summary.
"""

from __future__ import annotations

import argparse
import sys

from labkit import config
from labkit.data.prep_cli import dataset_parser
from labkit.errors import LabkitError
from labkit.labs.lm import data as wikitext


def build_parser() -> argparse.ArgumentParser:
    parser = dataset_parser(__doc__.splitlines()[0], "wikitext-2/", synthetic_what="corpus")
    parser.add_argument("--force", action="store_true", help="download again even if the files exist")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    folder = (args.root if args.root is not None else config.data_root()) / wikitext.FOLDER
    try:
        if args.synthetic:
            wikitext.write_synthetic_wikitext(folder, seed=args.seed)
            print(f"wrote a synthetic corpus to {folder}")
        else:
            wikitext.download_wikitext2(folder, force=args.force)
            print(f"WikiText-2 is in {folder}")
        corpus = wikitext.read_corpus(folder)
    except (LabkitError, OSError) as err:
        print(err, file=sys.stderr)
        return 1
    for split, ids in corpus.splits.items():
        print(f"{split:>5}: {ids.numel():>9,} tokens (with <eos>)")
    print(f"vocabulary: {len(corpus.vocab):,} words (WikiText-2: {wikitext.VOCAB_SIZE:,})")
    print("most common:", corpus.most_common("train", 10))
    return 0


if __name__ == "__main__":
    sys.exit(main())
