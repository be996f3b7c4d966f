"""Lab 05: a word-level Transformer language model on WikiText-2 (train, perplexity, generate).

Two recipes share one code path through `labkit.engine.fit`:

* `modern` (the lab's default): labkit's causal Transformer with an adaptive softmax,
  batch 32, fused AdamW (lr 2e-3, weight decay 0.1) with linear warm-up and a per-step cosine
  decay, gradient clipping, dropout 0.4: it takes ~4x more steps per second than the example,
  so it over-fits sooner (measured on valid.txt at dropout 0.2 / weight decay 0.01: train
  perplexity 50 against test 642) and needs the stronger regularisation;
* `example`: PyTorch's word_language_model recipe — full softmax, batch 20, plain SGD at
  lr 20, clip 0.25, and the learning rate divided by 4 whenever validation loss does not
  improve (`ReduceLROnPlateau(factor=0.25, patience=0)`).

Both use the example's model sizes (emsize 200, nhid 200, 2 layers, 2 heads; the example's dropout 0.2),
bptt 35 and eval batch 10, record per-epoch train/val perplexity, evaluate test perplexity
with the best checkpoint, write checkpoints (with the vocabulary, so `labkit generate CKPT`
works on its own) and TensorBoard logs including the model graph, and resume.

    labkit run lm                                   # full size, data in <data_root>/wikitext-2
    labkit run lm --train-split valid --val-split test --test-split none   # ../shared copy
    labkit generate runs/lm/checkpoints/best.pt --words 50 --temperature 1.0
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from labkit import config as labconfig
from labkit.callbacks import Callback
from labkit.checkpoint import CheckpointPolicy, check_resume_length, load_checkpoint
from labkit.data import wikitext
from labkit.data.wikitext import BpttBatches, Corpus, Vocabulary
from labkit.device import describe_device, pick_device, seed_everything
from labkit.engine import evaluate, fit
from labkit.history import History
from labkit.models.language_model import LanguageModel, build_language_model
from labkit.plots import plot_history, save_figure
from labkit.tensorboard import TensorBoardLogger
from labkit.text import LMTask, generate, pick_sentence, plot_attention


@dataclass
class LMConfig:
    """Everything a language-model run needs; plain values, stored in checkpoints."""

    # data
    data: str | None = None  # folder with train/valid/test.txt (None: see wikitext.resolve_root)
    synthetic: bool = False  # write and use a tiny synthetic corpus instead
    train_split: str = "train"
    val_split: str | None = "valid"
    test_split: str | None = "test"
    max_train_tokens: int | None = None  # use only the first N training tokens (quick runs)
    # model
    model: str = "transformer"
    emsize: int = 200
    nhid: int = 200
    nlayers: int = 2
    nhead: int = 2
    dropout: float = 0.4  # the example's 0.2 over-fits at this recipe's speed (see the module docstring)
    adaptive: bool = True
    cutoffs: list[int] | None = None
    tied: bool = False
    # batches
    batch_size: int = 32
    bptt: int = 35
    eval_batch_size: int = 10
    carry_state: bool | None = None  # LSTM: carry (h, c) across windows (default yes)
    # optimisation
    epochs: int = 6
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 2e-3
    weight_decay: float = 0.1
    schedule: str = "cosine"  # cosine (per step, after warm-up) | plateau (divide by 4) | none
    warmup: int = 50  # optimizer steps of linear warm-up (cosine schedule)
    clip: float | None = 0.5
    # run
    seed: int = 1111
    device: str | None = None
    out: str | None = None
    tensorboard: bool = True

    def model_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "emsize": self.emsize, "nhid": self.nhid, "nlayers": self.nlayers, "dropout": self.dropout,
            "tie_weights": self.tied, "adaptive_softmax": self.adaptive, "cutoffs": self.cutoffs,
        }
        if self.model == "transformer":
            options["nhead"] = self.nhead
        return options


#: The two recipes; `LMConfig()` is the modern one.
RECIPES: dict[str, dict[str, Any]] = {
    "modern": {},
    "example": {"adaptive": False, "tied": False, "dropout": 0.2, "batch_size": 20, "optimizer": "sgd", "lr": 20.0,
                "weight_decay": 0.0, "schedule": "plateau", "warmup": 0, "clip": 0.25},
}

#: Seconds-on-CPU sizes for smoke runs, tests and the notebook under LABKIT_SMOKE=1.
SMOKE: dict[str, Any] = {"synthetic": True, "emsize": 64, "nhid": 64, "batch_size": 16, "bptt": 20,
                         "eval_batch_size": 8, "epochs": 3, "dropout": 0.1}
#: Smoke-size optimiser settings per recipe (few steps: a higher AdamW lr, a short warm-up).
SMOKE_RECIPES: dict[str, dict[str, Any]] = {"modern": {"lr": 5e-3, "warmup": 10}, "example": {}}


def recipe(name: str = "modern", smoke: bool = False, **overrides: Any) -> LMConfig:
    """An `LMConfig` for a named recipe (at smoke size when `smoke`), with keyword overrides."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: expected one of {sorted(RECIPES)}")
    fields = {f.name for f in dataclasses.fields(LMConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown LMConfig fields {sorted(unknown)}")
    sized = {**SMOKE, **SMOKE_RECIPES[name]} if smoke else {}
    return LMConfig(**{**RECIPES[name], **sized, **overrides})


def smoke_config(name: str = "modern", **overrides: Any) -> LMConfig:
    """The recipe at seconds-on-CPU size on the synthetic corpus."""
    return recipe(name, smoke=True, **overrides)


# --------------------------------------------------------------------------- data


def lab_config(download: bool = True, **overrides: Any) -> tuple[LMConfig, str]:
    """The notebook's config and a sentence saying which data it uses.

    Smoke size (`LABKIT_SMOKE=1`): the synthetic corpus, output in a temporary folder. Otherwise WikiText-2 where
    `wikitext.resolve_root()` finds it; when only `valid.txt` and `test.txt` are there (the
    shared read-only copy) it trains on valid.txt and validates on test.txt, and says so;
    with no files it downloads them (when `download`).
    """
    if labconfig.is_smoke():  # test runs: keep their checkpoints and logs out of the checkout
        overrides.setdefault("out", tempfile.mkdtemp(prefix="labkit-lm-smoke-"))
        return smoke_config(**overrides), "smoke size: a tiny synthetic corpus in WikiText's layout"
    root = wikitext.resolve_root()
    present = wikitext.available_splits(root)
    if "train" in present:
        return recipe("modern", data=str(root), **overrides), f"WikiText-2 from {root}"
    if {"valid", "test"} <= set(present):
        cfg = recipe("modern", data=str(root), train_split="valid", val_split="test", test_split=None, **overrides)
        return cfg, (f"WikiText-2 from {root}, which has no train.txt: training on valid.txt and "
                     "validating on test.txt (numbers are not comparable with published ones)")
    if not download:
        raise wikitext.MissingSplitError(f"no WikiText-2 files in {root}; call lab_config(download=True)")
    root = wikitext.download_wikitext2()
    return recipe("modern", data=str(root), **overrides), f"WikiText-2 downloaded to {root}"



def synthetic_root() -> Path:
    """Where the synthetic corpus lives (`<data_root>/wikitext-2-synthetic`), written on first use."""
    root = labconfig.data_root() / "wikitext-2-synthetic"
    if not all((root / f"{s}.txt").is_file() for s in wikitext.SPLITS):
        wikitext.write_synthetic_wikitext(root)
    return root


def load_corpus(cfg: LMConfig) -> Corpus:
    """The corpus with the splits the run uses, training split first (it orders the vocabulary)."""
    splits = [cfg.train_split] + [s for s in (cfg.val_split, cfg.test_split) if s and s != cfg.train_split]
    root = synthetic_root() if cfg.synthetic else cfg.data
    return wikitext.read_corpus(root, splits=list(dict.fromkeys(splits)))


@dataclass
class LMData:
    corpus: Corpus
    train: BpttBatches
    val: BpttBatches | None
    test: BpttBatches | None


def make_batches(cfg: LMConfig, corpus: Corpus, device: torch.device | None = None) -> LMData:
    """Training windows (batch_size x bptt) and evaluation windows (eval_batch_size x bptt)."""
    train_ids = corpus[cfg.train_split]
    if cfg.max_train_tokens:
        train_ids = train_ids[: cfg.max_train_tokens]
    train = BpttBatches(train_ids, cfg.batch_size, cfg.bptt, device=device)

    def eval_batches(split: str | None) -> BpttBatches | None:
        return BpttBatches(corpus[split], cfg.eval_batch_size, cfg.bptt, device=device) if split else None

    return LMData(corpus, train, eval_batches(cfg.val_split), eval_batches(cfg.test_split))


# --------------------------------------------------------------------------- model and optimiser


def build_model(cfg: LMConfig, vocab_size: int) -> LanguageModel:
    return build_language_model(cfg.model, vocab_size, **cfg.model_options())


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int, floor: float = 0.0):
    """Per-step schedule: linear warm-up over `warmup` steps, then cosine decay to `floor` x lr."""
    total = max(total, warmup + 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def adamw(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, norms or embeddings); fused when possible."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "embedding" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel is about 4x faster on CPU than the for-each one
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr)


def build_optimizer(cfg: LMConfig, model: torch.nn.Module, steps_per_epoch: int) -> tuple[Any, Any, str]:
    """(optimizer, scheduler or None, scheduler interval) for the config."""
    if cfg.optimizer == "adamw":
        optimizer = adamw(model, cfg.lr, cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}: expected 'adamw' or 'sgd'")
    if cfg.schedule == "cosine":
        return optimizer, warmup_cosine(optimizer, cfg.warmup, cfg.epochs * steps_per_epoch), "step"
    if cfg.schedule == "plateau":  # the example: lr /= 4 when validation does not improve
        return optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.25, patience=0), "epoch"
    if cfg.schedule == "none":
        return optimizer, None, "epoch"
    raise ValueError(f"unknown schedule {cfg.schedule!r}: expected 'cosine', 'plateau' or 'none'")


# --------------------------------------------------------------------------- training


@dataclass
class LMRun:
    """What `train_lm` returns."""

    model: LanguageModel
    vocab: Vocabulary
    history: History
    config: LMConfig
    out_dir: Path
    test: dict[str, float] | None = None  # loss/perplexity on the test split (best checkpoint)

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def summary(self) -> dict[str, Any]:
        h = self.history
        result: dict[str, Any] = {"epochs": h.epoch[-1] if len(h) else 0,
                                  "train_perplexity": h.last("train_perplexity") if len(h) else math.nan}
        if "val_perplexity" in h:
            result["val_perplexity"] = h.best("val_perplexity")[1]
        if self.test is not None:
            result["test_perplexity"] = self.test["perplexity"]
        return result


def out_dir_for(cfg: LMConfig) -> Path:
    return Path(cfg.out) if cfg.out else labconfig.runs_dir() / "lm"


def checkpoint_config(cfg: LMConfig, vocab: Vocabulary) -> dict[str, Any]:
    """What checkpoints store: the run's config and the vocabulary (for `labkit generate`)."""
    return {**dataclasses.asdict(cfg), "vocab": vocab.to_list()}


def train_lm(
    cfg: LMConfig,
    callbacks: Sequence[Callback] = (),
    resume_from: str | Path | None = None,
    corpus: Corpus | None = None,
    progress: bool | None = None,
) -> LMRun:
    """Train a language model through `labkit.engine.fit` and test its best checkpoint."""
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    corpus = corpus if corpus is not None else load_corpus(cfg)
    data = make_batches(cfg, corpus, device)
    model = build_model(cfg, len(corpus.vocab))
    optimizer, scheduler, interval = build_optimizer(cfg, model, len(data.train))
    out = out_dir_for(cfg)
    all_callbacks = list(callbacks)
    if cfg.tensorboard:
        example = torch.zeros(1, cfg.bptt, dtype=torch.long, device=device)
        all_callbacks.append(TensorBoardLogger(out / "tb", hparams=dataclasses.asdict(cfg), graph_input=example))
    checkpoints = CheckpointPolicy(out / "checkpoints")
    history = fit(
        model, data.train, epochs=cfg.epochs, optimizer=optimizer, task=LMTask(cfg.carry_state),
        eval_data={"val": data.val} if data.val is not None else None, metrics=("perplexity",),
        scheduler=scheduler, scheduler_interval=interval, device=device, grad_clip=cfg.clip,
        checkpoints=checkpoints, callbacks=all_callbacks, resume_from=resume_from,
        progress=progress, config=checkpoint_config(cfg, corpus.vocab),
    )
    run = LMRun(model=model, vocab=corpus.vocab, history=history, config=cfg, out_dir=out)
    if data.test is not None and not history.diverged:
        best = checkpoints.path / "best.pt"
        if data.val is not None and best.exists():  # as the example: test the best validation model
            load_checkpoint(best, model, map_location=device)
        run.test = evaluate(model, data.test, task=LMTask(cfg.carry_state), metrics=("perplexity",), device=device)
        if cfg.tensorboard:
            _log_test(out / "tb", run.test, history.epoch[-1])
    return run


def _log_test(log_dir: Path, test: dict[str, float], epoch: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(log_dir)) as writer:
        for key, value in test.items():
            writer.add_scalar(f"{key}/test", value, epoch)


def load_lm(path: str | Path, device: str | torch.device | None = None) -> tuple[LanguageModel, Vocabulary, LMConfig]:
    """Model, vocabulary and config from a checkpoint written by `train_lm`."""
    ckpt = load_checkpoint(path, map_location="cpu")
    saved = dict(ckpt.config)
    words = saved.pop("vocab", None)
    if not words:
        raise ValueError(
            f"{path} holds no vocabulary: it was not written by `labkit run lm` (train_lm), so the "
            "word ids cannot be turned back into words."
        )
    fields = {f.name for f in dataclasses.fields(LMConfig)}
    cfg = LMConfig(**{k: v for k, v in saved.items() if k in fields})
    model = build_model(cfg, len(words))
    load_checkpoint(path, model, map_location="cpu")
    model.to(pick_device(device) if device is not None else "cpu")
    return model, Vocabulary(words), cfg


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options for `labkit run lm`; unset options take the recipe's value."""
    add = parser.add_argument
    add("--recipe", choices=sorted(RECIPES), default="modern",
        help="modern: adaptive softmax + AdamW/warm-up/cosine (default); example: PyTorch's example")
    add("--data", default=None, help="folder with train.txt/valid.txt/test.txt")
    add("--synthetic", action="store_true", help="use a tiny synthetic corpus (no download)")
    add("--download", action="store_true", help="download WikiText-2 into --data (or the data root) first")
    add("--train-split", default=None, help="split to train on (default train; the shared copy has only valid/test)")
    add("--val-split", default=None, help="split for per-epoch validation ('none' to skip)")
    add("--test-split", default=None, help="split for the final test ('none' to skip)")
    add("--max-train-tokens", type=int, default=None, help="train on the first N tokens only")
    add("--model", choices=("transformer", "lstm"), default=None)
    for name in ("emsize", "nhid", "nlayers", "nhead", "batch-size", "bptt", "eval-batch-size", "epochs",
                 "warmup", "seed"):
        add(f"--{name}", type=int, default=None)
    for name in ("dropout", "lr", "weight-decay", "clip"):
        add(f"--{name}", type=float, default=None)
    add("--adaptive", action=argparse.BooleanOptionalAction, default=None, help="adaptive softmax output")
    add("--cutoffs", type=int, nargs="+", default=None, help="adaptive softmax cluster boundaries")
    add("--tied", action=argparse.BooleanOptionalAction, default=None, help="tie embedding and decoder")
    add("--optimizer", choices=("adamw", "sgd"), default=None)
    add("--schedule", choices=("cosine", "plateau", "none"), default=None)
    add("--device", default=None)
    add("--out", default=None, help="run folder (default runs/lm)")
    add("--no-tensorboard", action="store_true")
    add("--resume", default=None, help="checkpoint to resume from (e.g. runs/lm/checkpoints/last.pt)")
    add("--smoke", action="store_true", help="seconds-long run on a synthetic corpus (also LABKIT_SMOKE=1)")


def config_from_args(args: argparse.Namespace) -> LMConfig:
    overrides: dict[str, Any] = {}
    for f in dataclasses.fields(LMConfig):
        if f.name in ("synthetic", "tensorboard"):  # flags: only their "on" side overrides
            continue
        value = getattr(args, f.name, None)
        if value is not None:
            overrides[f.name] = value
    for split in ("val_split", "test_split"):
        if overrides.get(split) == "none":
            overrides[split] = None
    smoke = labconfig.is_smoke() or getattr(args, "smoke", False)
    if getattr(args, "synthetic", False) or (smoke and args.data is None):
        overrides["synthetic"] = True
    if getattr(args, "no_tensorboard", False):
        overrides["tensorboard"] = False
    return recipe(args.recipe, smoke=smoke, **overrides)


def main(args: argparse.Namespace) -> dict[str, Any]:
    cfg = config_from_args(args)
    if getattr(args, "download", False):
        wikitext.download_wikitext2(cfg.data)
    print(f"device: {describe_device(cfg.device)}")
    print(f"recipe {args.recipe}: train on {cfg.train_split}, validate on {cfg.val_split}, test on {cfg.test_split}")
    if args.resume:
        check_resume_length(args.resume, load_checkpoint(args.resume).config, cfg.epochs)
    run = train_lm(cfg, resume_from=args.resume)
    print(run.history.table([k for k in run.history.metrics if k.endswith("perplexity")]))
    result = run.summary()
    if run.test is not None:
        print(f"test perplexity ({cfg.test_split}): {run.test['perplexity']:.2f}")
    print(f"checkpoints: {run.checkpoint_dir}/  (labkit generate {run.checkpoint_dir / 'best.pt'} --words 50)")
    return result


def smoke(out_dir: str | Path) -> dict[str, Any]:
    """Train a tiny model on synthetic text, generate from it, and report perplexities."""
    cfg = smoke_config(out=str(out_dir))
    run = train_lm(cfg, progress=False)
    sample = generate(run.model, run.vocab, "the", n_words=20, seed=0, context=cfg.bptt)
    out = Path(out_dir)
    (out / "sample.txt").write_text(sample.text + "\n")
    plot_history(run.history, path=out / "curves.png", title="Lab 05 smoke: Transformer LM")
    corpus = load_corpus(cfg)
    sentence = pick_sentence(corpus, "valid", 6, 20)
    weights = run.model.attention_maps(corpus.vocab.encode(sentence)[0].to(next(run.model.parameters()).device))
    save_figure(plot_attention(weights[0], sentence, title="layer 1"), out / "attention.png")
    return run.summary()


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
    model, vocab, cfg = load_lm(args.checkpoint, args.device)
    result = generate(model, vocab, args.prompt, n_words=args.words, temperature=args.temperature,
                      top_k=args.top_k, seed=args.seed, allow_unk=not args.no_unk, context=cfg.bptt)
    for note in result.notes:
        print(f"note: {note}")
    print(result.text)
    return {"words": result.words, "notes": result.notes}
