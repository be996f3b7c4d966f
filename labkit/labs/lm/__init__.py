"""Lab 05: a word-level Transformer language model on WikiText-2 (train, perplexity, generate).

Two recipes: `modern` (default: adaptive softmax, AdamW with warm-up and cosine decay, lr 2e-3 and dropout 0.2 as
bench/lm_bench.py --tune chose them on held-out text, results/lm/README.md) and `example` (PyTorch's
word_language_model Transformer: full softmax, SGD at lr 5 as in its README, clip 0.25, lr / 4 on a validation
plateau). Both use the example's sizes (emsize 200, nhid 200, 2 layers, 2 heads), bptt 35 and eval batch 10.

    labkit run lm --size laptop          # the shared copy (valid.txt and test.txt only)
    labkit generate runs/lm/checkpoints/best.pt --words 50 --temperature 1.0
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from labkit import config as labconfig
from labkit import runner
from labkit.checkpoint import load_checkpoint
from labkit.device import describe_device, pick_device
from labkit.distributed import per_rank_batch_size
from labkit.errors import DataError, LabkitError, UsageError
from labkit.lab import Lab, LabConfig, LabData, option, register
from labkit.labs.lm import data as wikitext
from labkit.labs.lm.data import BpttBatches, Corpus, Vocabulary
from labkit.labs.lm.model import LanguageModel, build_language_model
from labkit.labs.lm.text import LMTask, generate, pick_sentence, plot_attention
from labkit.optim import OPTIMIZERS, SCHEDULES
from labkit.plots import save_figure

SPLIT_CHOICES = (*wikitext.SPLITS, "none")


@dataclass(frozen=True)
class Config(LabConfig):
    """Lab 05's settings; the defaults are the modern recipe at full size."""

    # training (the shared fields, at the modern recipe's values)
    epochs: int = option(6, "training epochs (passes over the training text)", min=1)
    batch_size: int = option(32, "rows of the text read in parallel (global; under torchrun each process "
                             "reads batch/N of them)", min=1)
    lr: float = option(2e-3, "(peak) learning rate: AdamW's after warm-up, or SGD's", gt=0)
    optimizer: str = option("adamw", "optimizer (modern: adamw; example: sgd)", choices=OPTIMIZERS)
    momentum: float = option(0.0, "SGD momentum (0: plain SGD, as the example)", min=0, max=1)
    weight_decay: float = option(0.1, "weight decay (decoupled for AdamW)", min=0)
    decay_matrices_only: bool = option(True, "weight decay on weight matrices only (not biases, norms, "
                                       "embeddings)")
    schedule: str = option("warmup_cosine", "learning-rate schedule: warmup_cosine (modern), plateau "
                           "(example: x gamma when validation does not improve), ... (see labkit.optim)",
                           choices=SCHEDULES)
    warmup_steps: int = option(50, "warm-up length in optimizer steps (warmup, warmup_cosine)", min=0)
    grad_clip: float | None = option(0.5, "clip the gradient norm to this value", gt=0)
    amp: bool = option(False, "mixed precision where the device runs it natively (off: the lab trains in "
                       "float32, as before)")
    seed: int = option(1111, "random seed (1111: the example's)", min=0)
    # model
    model: str = option("transformer", "transformer (causal self-attention) or lstm",
                        choices=("transformer", "lstm"))
    emsize: int = option(200, "word embedding size", min=1)
    nhid: int = option(200, "feed-forward width (transformer) or hidden size (lstm)", min=1)
    nlayers: int = option(2, "layers", min=1)
    nhead: int = option(2, "attention heads (transformer; must divide --emsize)", min=1)
    dropout: float = option(0.2, "dropout (0.2 with lr 2e-3: chosen on held-out text by bench/lm_bench.py --tune)",
                            min=0, max=1)
    adaptive: bool = option(True, "adaptive softmax output (cheap on a large vocabulary)")
    cutoffs: tuple[int, ...] | None = option(None, "adaptive softmax cluster boundaries, e.g. 2000,10000 "
                                             "(default: 2000,10000 on WikiText-2)", min=1)
    tied: bool = option(False, "tie the embedding and the full-softmax decoder (needs --no-adaptive)")
    # batches and data
    bptt: int = option(35, "window length in words (backpropagation through time)", min=1)
    eval_batch_size: int = option(10, "rows of the text read in parallel when evaluating", min=1)
    carry_state: bool | None = option(None, "lstm: carry (h, c) from one window to the next (default: yes "
                                      "for the lstm, no for the transformer)")
    train_split: str = option("train", "WikiText file to train on", choices=wikitext.SPLITS)
    val_split: str | None = option("valid", "file to validate on after every epoch (picks best.pt); the "
                                   "training file itself means its last --val-fraction, held out; none: "
                                   "no validation", choices=SPLIT_CHOICES)
    val_fraction: float = option(0.1, "share of the training file held out at its end for validation "
                                 "when --val-split is the training file", gt=0, max=0.5)
    test_split: str | None = option("test", "file to test the chosen checkpoint on once; none: no test",
                                    choices=SPLIT_CHOICES)
    max_train_tokens: int | None = option(None, "train on the first N tokens only (quick runs)", min=2)

    def __post_init__(self) -> None:
        for name in ("val_split", "test_split"):
            if getattr(self, name) == "none":
                object.__setattr__(self, name, None)
        super().__post_init__()
        if self.model == "transformer" and self.emsize % self.nhead:
            raise UsageError(f"--nhead {self.nhead} must divide --emsize {self.emsize}: each head takes "
                             "emsize/nhead of the embedding (e.g. --nhead 2 or 4 for --emsize 200).")
        if self.tied and self.adaptive:
            raise UsageError("--tied shares the embedding with the full-softmax decoder: labkit's adaptive "
                             "softmax (nn.AdaptiveLogSoftmaxWithLoss) cannot be tied to a plain nn.Embedding "
                             "(tying an adaptive softmax needs an adaptive input embedding, Baevski & Auli "
                             "2019, which labkit does not build): give --no-adaptive with --tied.")
        if self.tied and self.model == "lstm" and self.nhid != self.emsize:
            raise UsageError(f"--tied needs --nhid equal to --emsize for the lstm (the decoder reuses the "
                              f"embedding), got --nhid {self.nhid} and --emsize {self.emsize}.")
        if self.carry_state and self.model != "lstm":
            raise UsageError("--carry-state needs --model lstm: a transformer has no state between windows.")
        if self.test_split is not None and self.test_split == self.val_split:
            raise UsageError(f"--val-split {self.val_split} is also --test-split: validation picks best.pt, so a "
                             "test on the same file is not a test. Validate on another file (or on the "
                             "training file's end: --val-split TRAIN-SPLIT), or give --test-split none.")
        if self.test_split is not None and self.test_split == self.train_split:
            raise UsageError(f"--test-split {self.test_split} is the training file: a test on the words the "
                             "model trained on measures memory; choose another file or none.")


@dataclass
class LMSource:
    """What `load_data` read: the corpus and the word-id stream of each role (before sharding)."""

    corpus: Corpus
    streams: dict[str, torch.Tensor]  # "train", "val", "test" -> 1-D word ids

    @property
    def vocab(self) -> Vocabulary:
        return self.corpus.vocab


@register
class LanguageModelLab(Lab):
    """Lab 05: a word-level language model; its figures are samples and attention heat-maps."""

    name = "lm"
    title = "Lab 05: Transformer language model"
    Config = Config
    recipes: ClassVar[dict[str, dict[str, Any]]] = {
        "modern": {},
        # lr 5: the README's Transformer command; main.py's default 20 (for its LSTM) is far worse (bench/lm_bench.py)
        "example": {"adaptive": False, "tied": False, "dropout": 0.2, "batch_size": 20, "optimizer": "sgd",
                    "lr": 5.0, "momentum": 0.0, "weight_decay": 0.0, "decay_matrices_only": False,
                    "schedule": "plateau", "gamma": 0.25, "patience_lr": 0, "warmup_steps": 0,
                    "grad_clip": 0.25},
    }
    sizes: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"emsize": 64, "nhid": 64, "batch_size": 16, "bptt": 20, "eval_batch_size": 8, "epochs": 3,
                  "dropout": 0.1,
                            "recipes": {"modern": {"lr": 5e-3, "warmup_steps": 10}}},
        # the shared copy has no train.txt: train on valid.txt but its last 10% (which validates), test on
        # test.txt; the notebook takes about 2 minutes on a quiet 2-core CPU and over-fits after epoch 1
        "laptop": {"train_split": "valid", "val_split": "valid", "test_split": "test", "epochs": 5},
        "full": {},
    }
    metrics = ("perplexity",)
    epoch_splits = ("val",)
    monitor = "val_perplexity"
    final_splits = ("test",)
    # the adaptive softmax skips clusters no target falls in; the positional table is a constant buffer
    ddp_options: ClassVar[dict[str, Any]] = {"find_unused_parameters": True, "broadcast_buffers": False}
    unused_options = ("label_smoothing", "channels_last")

    def load_data(self, cfg: Config, ctx: Any) -> LabData:
        generated = cfg.size == "smoke" and cfg.data is None
        root = synthetic_root() if generated else wikitext.resolve_root(cfg.data)
        splits = [s for s in (cfg.train_split, cfg.val_split, cfg.test_split) if s]
        # the training file first: it orders the vocabulary by frequency (the adaptive softmax's clusters)
        corpus = wikitext.read_corpus(root, splits=list(dict.fromkeys(splits)))
        streams = role_streams(cfg, corpus)
        names = split_names(cfg, streams)
        train = shard_batches(streams["train"], cfg.batch_size, cfg.bptt, ctx, f"{names['train']}, --batch-size")
        evals = {role: shard_batches(streams[role], cfg.eval_batch_size, cfg.bptt, ctx, f"{names[role]}, "
                                     "--eval-batch-size") for role in ("val", "test") if role in streams}
        what = "a generated corpus (random Markov text) in WikiText-2's layout" if generated else "WikiText-2"
        description = (f"{what} from {root}: " + "; ".join(f"{role} on {name}" for role, name in names.items())
                       + f"; vocabulary {len(corpus.vocab):,} words (the files read)")
        if not generated and cfg.train_split != "train":
            description += "; not comparable with published perplexities, which train on train.txt"
        return LabData(train=train, eval=evals, info={"vocab": corpus.vocab.to_list()}, description=description,
                       source=LMSource(corpus, streams), split_names=names)

    def build_model(self, cfg: Config, info: Any) -> LanguageModel:
        words = info.get("vocab") if info else None
        if not words:
            raise LabkitError("the language model needs the vocabulary (info['vocab']): load the data, or "
                              "rebuild a trained model with runner.load_run(checkpoint).")
        return language_model(cfg, len(words))

    def task(self, cfg: Config) -> LMTask:
        return LMTask(cfg.carry_state)

    def graph_input(self, cfg: Config, data: LabData) -> torch.Tensor:
        device = data.train.data.device if isinstance(data.train, BpttBatches) else None
        return torch.zeros(1, cfg.bptt, dtype=torch.long, device=device)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--download", action="store_true",
                            help="download WikiText-2 (checksummed) into --data, else LABKIT_DATA/wikitext-2, "
                                 "when the files the run needs are missing")

    def main(self, cfg: Config, args: Any) -> None:
        if getattr(args, "download", False):
            download_data(cfg)
        print(f"device: {describe_device(cfg.device)}; {cfg.recipe} recipe, {cfg.size} size")
        # then the runner's default: one run, then report

    def report(self, run: runner.Run) -> dict[str, Any]:
        """Perplexity table, a sample (sample.txt) and layer 1's attention (attention.png) in the run folder;
        what a diverged or cut-short run cannot give is skipped, saying why."""
        cfg, h = run.config, run.history
        if run.data is not None:
            print(f"data: {run.data.description}")
        keys = [k for k in h if k.endswith("perplexity") and len(h[k]) == len(h)]
        print(h.table(keys) if len(h) else "no epoch completed (stopped inside the first): no perplexity table")
        if "test" in run.final:
            on = run.data.split_label("test") if run.data else cfg.test_split
            print(f"test perplexity on {on} with epoch {run.chosen_epoch}'s weights: "
                  f"{run.final['test']['perplexity']:.2f}")
        if h.diverged or not len(h) or run.out_dir is None:
            why = "the run diverged" if h.diverged else "no epoch completed" if len(h) == 0 else "no run folder"
            print(f"no sample or attention heat-map: {why}")
            return {}
        vocab = vocabulary(run)
        sample = generate(run.model, vocab, "the", n_words=20, seed=0, context=cfg.bptt)
        (run.out_dir / "sample.txt").write_text(sample.text + "\n")
        print(f"sample (temperature 1): {sample.text}")
        lm = run.model
        if run.data is not None and hasattr(lm, "attention_maps"):
            try:
                sentence = pick_sentence(run.data.source.corpus, sample_split(cfg), 6, 20)
                ids = vocab.encode(sentence)[0].to(next(lm.parameters()).device)
                save_figure(plot_attention(lm.attention_maps(ids)[0], sentence, title="layer 1"),
                            run.out_dir / "attention.png")
            except ValueError:
                print(f"no attention heat-map: no short clean line in {sample_split(cfg)}.txt")
        best = run.best_checkpoint or run.last_checkpoint
        if best is not None:
            print(f"checkpoints: {run.checkpoint_dir}/  (labkit generate {best} --words 50)")
        return {}


LAB = LanguageModelLab()


# --------------------------------------------------------------------------- data


def synthetic_root() -> Path:
    """The generated corpus of smoke runs, written on first use under the cache (never into LABKIT_DATA, which a
    course server may mount read-only)."""
    root = labconfig.cache_dir() / "synthetic" / "wikitext-2-synthetic"
    if not all((root / f"{s}.txt").is_file() for s in wikitext.SPLITS):
        wikitext.write_synthetic_wikitext(root)
    return root


def role_streams(cfg: Config, corpus: Corpus) -> dict[str, torch.Tensor]:
    """The word ids each role reads: train (after any hold-out and `max_train_tokens`), val, test."""
    train = corpus[cfg.train_split]
    streams: dict[str, torch.Tensor] = {}
    if cfg.val_split is not None and cfg.val_split == cfg.train_split:
        held = max(2, round(train.numel() * cfg.val_fraction))
        train, streams["val"] = train[:-held], train[-held:]
    elif cfg.val_split is not None:
        streams["val"] = corpus[cfg.val_split]
    if cfg.test_split is not None:
        streams["test"] = corpus[cfg.test_split]
    if cfg.max_train_tokens:
        train = train[: cfg.max_train_tokens]
    return {"train": train, **streams}


def split_names(cfg: Config, streams: dict[str, torch.Tensor]) -> dict[str, str]:
    """{"train": "valid.txt, first 90% (195,881 tokens)", ...}: which text each role read."""
    names = {}
    for role, split in (("train", cfg.train_split), ("val", cfg.val_split), ("test", cfg.test_split)):
        if role not in streams:
            continue
        part = ""
        if cfg.val_split == cfg.train_split and role in ("train", "val"):
            share = 1 - cfg.val_fraction if role == "train" else cfg.val_fraction
            part = f", {'first' if role == 'train' else 'last'} {share:.0%}"
        count = f" ({streams[role].numel():,} tokens)"
        if role == "train" and cfg.max_train_tokens and streams[role].numel() == cfg.max_train_tokens:
            count = f", cut to its first {cfg.max_train_tokens:,} tokens"
        names[role] = f"{split}.txt{part}{count}"
    return names


def shard_batches(ids: torch.Tensor, batch_size: int, bptt: int, ctx: Any, what: str = "") -> BpttBatches:
    """This process's rows of the `batch_size`-row layout of `ids`, as bptt windows on `ctx.device` (under
    torchrun N processes read `batch_size / N` consecutive rows each). `what`: "file (tokens), --option"."""
    world, rank = getattr(ctx, "world_size", 1), getattr(ctx, "rank", 0)
    per_rank = per_rank_batch_size(batch_size, world)
    if what and ids.numel() // batch_size < 2:
        text, flag = what.rsplit(", ", 1)
        raise DataError(f"{text} is too short for {flag} {batch_size}: each of its {batch_size} rows needs at "
                        f"least 2 tokens (a word and the next). Give {flag} {max(1, ids.numel() // 2)} or less "
                        "(its rows are then read in windows of --bptt tokens).")
    rows = wikitext.batchify(ids, batch_size)
    if world > 1:
        ids = rows[rank * per_rank:(rank + 1) * per_rank].reshape(-1)
    return BpttBatches(ids, per_rank, bptt, device=getattr(ctx, "device", None))


def download_data(cfg: Config) -> Path:
    """Download (checksummed) the WikiText-2 files the config reads when they are missing; the folder."""
    if cfg.size == "smoke" and cfg.data is None:
        return synthetic_root()
    needed = list(dict.fromkeys(s for s in (cfg.train_split, cfg.val_split, cfg.test_split) if s))
    found = wikitext.resolve_root(cfg.data)
    if all((found / f"{s}.txt").is_file() for s in needed):
        return found
    target = found if cfg.data is not None else labconfig.data_root() / wikitext.FOLDER
    return wikitext.download_wikitext2(target, splits=needed)


def sample_split(cfg: Config) -> str:
    """A file the model did not train on, for prompts and heat-maps (else the training file)."""
    if cfg.val_split and cfg.val_split != cfg.train_split:
        return cfg.val_split
    return cfg.test_split or cfg.train_split


# --------------------------------------------------------------------------- model


def language_model(cfg: Config, vocab_size: int) -> LanguageModel:
    """The config's model for a vocabulary of `vocab_size` words."""
    options: dict[str, Any] = {"emsize": cfg.emsize, "nhid": cfg.nhid, "nlayers": cfg.nlayers,
                               "dropout": cfg.dropout, "tie_weights": cfg.tied, "adaptive_softmax": cfg.adaptive,
                               "cutoffs": list(cfg.cutoffs) if cfg.cutoffs else None}
    if cfg.model == "transformer":
        options["nhead"] = cfg.nhead
    try:
        return build_language_model(cfg.model, vocab_size, **options)
    except ValueError as err:  # e.g. cutoffs beyond this vocabulary
        raise UsageError(f"{err} (vocabulary of {vocab_size:,} words)") from None


def vocabulary(run: runner.Run) -> Vocabulary:
    """The run's vocabulary (stored in its checkpoints)."""
    words = run.info.get("vocab")
    if not words:
        raise LabkitError(f"this {run.lab} run holds no vocabulary: it is not a language-model run.")
    return Vocabulary(words)


# --------------------------------------------------------------------------- labkit generate


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint written by `labkit run lm` (e.g. runs/lm/checkpoints/best.pt)")
    parser.add_argument("--prompt", default="", help="words to start from (default: a new line)")
    parser.add_argument("--words", type=int, default=50, help="how many words to generate")
    parser.add_argument("--temperature", type=float, default=1.0, help="<1: safer words, >1: more surprising")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k most likely words only")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same text")
    parser.add_argument("--no-unk", action="store_true", help="never generate <unk>")
    parser.add_argument("--device", default=None)


def generate_main(args: argparse.Namespace) -> dict[str, Any]:
    if args.words < 1:
        raise UsageError(f"--words must be at least 1, got {args.words}.")
    if not args.temperature > 0:
        raise UsageError(f"--temperature must be greater than 0 (e.g. 0.1 for nearly greedy), got "
                         f"{args.temperature}.")
    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}.")
    written_by = load_checkpoint(args.checkpoint).config.get("lab")
    if written_by != LAB.name:
        who = f"`labkit run {written_by}`" if written_by else "something other than `labkit run`"
        raise LabkitError(f"{args.checkpoint} was written by {who}, not by `labkit run lm`: `labkit generate` "
                          "needs a language-model checkpoint (e.g. runs/lm/checkpoints/best.pt).")
    run = runner.load_run(args.checkpoint, device=pick_device(args.device) if args.device else "cpu")
    result = generate(run.model, vocabulary(run), args.prompt, n_words=args.words, temperature=args.temperature,
                      top_k=args.top_k, seed=args.seed, allow_unk=not args.no_unk, context=run.config.bptt)
    for note in result.notes:
        print(f"note: {note}")
    print(result.text)
    return {"words": result.words, "notes": result.notes}



LanguageModelLab.commands = {"generate": (add_generate_arguments, generate_main,
                                          "generate text from a language-model checkpoint")}
