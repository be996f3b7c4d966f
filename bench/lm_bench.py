"""Lab 05 bench: the tooling (labkit's loop vs the example's) and the recipe (labkit's default vs PyTorch's
word_language_model), on CPU, on WikiText-2.

The shared copy has no `train.txt`, so the text is split three ways and each part has one job:
  * train: the first 90 % of `valid.txt`;
  * hold-out: the last 10 % of `valid.txt` — the only text any recipe setting is chosen on (`--tune`);
  * test: `test.txt`, read once per reported run, never for choosing anything.
Without `../shared/datasets/wikitext-2` a synthetic corpus of the same size is used (numbers for
correctness only).

The reference is built like the example (`main.py --model Transformer`, `model.py`): a subclass of
`nn.Transformer` (2 encoder layers, 2 heads, feed-forward 200, its default dropout 0.1, final LayerNorm,
Xavier init) whose decoder is replaced by a Linear layer, token embedding x sqrt(200), sinusoidal
positions with dropout 0.2, a float causal mask, full softmax (Linear + log_softmax + NLLLoss), batch
20 x bptt 35, its own loop: `clip_grad_norm_(0.25)` and plain SGD by hand (`p.data.add_(p.grad,
alpha=-lr)`) with lr 5, the example README's command for the Transformer (`--lr 5`; main.py's default
20 is the LSTM's and is far worse for the Transformer). At every epoch end (and at the budget's end) it
evaluates the hold-out text, keeps the best weights and otherwise divides the lr by 4, as main.py does; the
weights it kept are the ones tested.

Two questions, two figures (> 1 means labkit better, everywhere):
  1. tooling_ratio — the same work: the reference model and recipe (SGD lr 5, clip 0.25, batch 20,
     bptt 35, CPU, the same windows) trained by the example's hand-written loop and by
     `labkit.engine.fit` (torch.optim.SGD, which does the same update), in alternating rounds with equal
     numbers of batches; tokens/s, ratio of medians over the rounds. Both at the CPU's best settings: bf16
     autocast where it runs bf16 natively (`labkit.device.amp_dtype`; `fit(amp=True)`, the loop under the
     same `torch.autocast`), else fp32. Against the limit, in the same run: the CPU's 2048x2048 matmul
     FLOP/s in fp32 and bf16 where native (`throughput.matmul_flops`), the FLOPs per token of one training
     step counted by `FlopCounterMode`, and `peak_fraction` = labkit's training FLOP/s (tokens/s × FLOPs
     per token) ÷ the matmul FLOP/s of the precision it trained in.
  2. recipe_ratio — each side's own default: labkit's `modern` recipe (adaptive softmax, batch 32, fused
     AdamW with warm-up and a cosine decay over the time budget, clip 0.5) against the reference recipe,
     the same wall-clock training budget each (hold-out evaluations included), `--seeds` seeds per side (sides
     alternated in order), each side testing the epoch with its best hold-out perplexity (the lab's best.pt,
     the example's saved model), test perplexity read once per run: median reference perplexity / median
     labkit perplexity (and min/median/max of each side).
`--tune` first chooses labkit's lr and dropout on the hold-out text (a grid, one seed, the recipes' budget per
setting unless `--tune-budget` says otherwise) and then uses the chosen setting for the recipe figure; without it
the lab's defaults are used (chosen by this `--tune` on a quiet 2-core CPU: results/lm/README.md). What was
tuned on what: the grid on the hold-out only; the reference's settings are the example's own (its README's
`--lr 5`), not tuned; `test.txt` chose nothing.

    python bench/lm_bench.py --tune     # the whole protocol (about 30 minutes on a quiet 2-core CPU)
    python bench/lm_bench.py            # the figures at the lab's defaults (about 15 minutes)
    python bench/lm_bench.py --quick    # seconds: a correctness run on small budgets

Last line: `RESULT tooling_ratio=<x> recipe_ratio=<x> ppl=<labkit median> ref_ppl=<reference median>
tps_ratio=<labkit/reference tokens/s of the recipe runs> peak_fraction=<x> precision=<fp32|bf16>
matmul_fp32_gflops=<x> matmul_bf16_gflops=<x or na>`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch._dynamo  # the first optimizer pulls this in: import it here, outside the timings
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/throughput.py

from throughput import matmul_flops, matmul_text, peak_fraction, precision_name, spread_text, training_flops

from labkit import config
from labkit.callbacks import Callback, Progress
from labkit.device import amp_dtype
from labkit.engine import Task, evaluate, fit
from labkit.labs import lm as lab
from labkit.labs.lm import data as wikitext
from labkit.labs.lm.data import BpttBatches
from labkit.labs.lm.text import LMTask
from labkit.optim import make_optimizer

# --------------------------------------------------------------------------- the reference


class ReferencePositionalEncoding(nn.Module):
    """As the example: (len, 1, d) sinusoid table added to (len, batch, d) inputs, then dropout."""

    def __init__(self, d_model: int, dropout: float, max_len: int = 5000) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(position * div_term)
        table[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", table.unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pe[: x.size(0)])


class ReferenceTransformer(nn.Transformer):
    """The example's TransformerModel: an `nn.Transformer` (so its encoder gets nn.Transformer's
    Xavier initialisation) whose decoder is replaced by a Linear layer; sequence-first, float causal
    mask, full log-softmax output."""

    def __init__(self, ntoken: int, ninp: int = 200, nhead: int = 2, nhid: int = 200, nlayers: int = 2,
                 dropout: float = 0.2) -> None:
        # dropout is not passed on: the encoder layers keep nn.Transformer's default 0.1, as in the example
        super().__init__(d_model=ninp, nhead=nhead, dim_feedforward=nhid, num_encoder_layers=nlayers)
        self.ninp = ninp
        self.src_mask: torch.Tensor | None = None
        self.pos_encoder = ReferencePositionalEncoding(ninp, dropout)
        self.input_emb = nn.Embedding(ntoken, ninp)
        self.decoder = nn.Linear(ninp, ntoken)  # replaces nn.Transformer's decoder stack
        nn.init.uniform_(self.input_emb.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, src: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if self.src_mask is None or self.src_mask.size(0) != len(src):
            keep = torch.ones(len(src), len(src)).tril().bool()
            self.src_mask = torch.zeros(len(src), len(src)).masked_fill(~keep, float("-inf"))
        x = self.pos_encoder(self.input_emb(src) * math.sqrt(self.ninp))
        return F.log_softmax(self.decoder(self.encoder(x, mask=self.src_mask)), dim=-1)


def example_batchify(ids: torch.Tensor, bsz: int) -> torch.Tensor:
    """The example's layout: (n, bsz), column b is the b-th contiguous slice."""
    n = ids.numel() // bsz
    return ids[: n * bsz].view(bsz, -1).t().contiguous()


def example_batches(source: torch.Tensor, bptt: int):
    for i in range(0, source.size(0) - 1, bptt):
        seq_len = min(bptt, len(source) - 1 - i)
        yield source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].reshape(-1)


def train_reference(ids: torch.Tensor, ntokens: int, budget: float, seed: int, lr: float = 5.0,
                    holdout: torch.Tensor | None = None) -> dict:
    """The example's main.py within `budget` seconds; with `holdout`, its epoch end too (a partial last epoch
    included): evaluate, keep the weights of the best hold-out perplexity, else divide the lr by 4; the best
    weights are the model returned (the example tests the model it saved)."""
    torch.manual_seed(seed)
    model = ReferenceTransformer(ntokens)
    criterion = nn.NLLLoss()
    train_data = example_batchify(ids, 20)
    clip, bptt = 0.25, 35
    tokens = batches = epochs = 0
    best, weights = math.inf, None
    model.train()
    start = time.perf_counter()
    while time.perf_counter() - start < budget:
        epochs += 1
        for data, targets in example_batches(train_data, bptt):
            model.zero_grad()
            output = model(data).view(-1, ntokens)
            loss = criterion(output, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
            tokens += targets.numel()
            batches += 1
            if time.perf_counter() - start >= budget:
                break
        if holdout is not None:
            ppl = evaluate_reference(model, holdout, ntokens)
            model.train()
            if ppl < best:
                best, weights = ppl, {k: v.clone() for k, v in model.state_dict().items()}
            else:
                lr /= 4.0
    seconds = time.perf_counter() - start
    if weights is not None:
        model.load_state_dict(weights)
    return {"model": model, "seconds": seconds, "tokens": tokens, "batches": batches, "holdout_ppl": best,
            "epochs": batches / len(range(0, train_data.size(0) - 1, bptt)), "batch": 20}


@torch.no_grad()
def evaluate_reference(model: ReferenceTransformer, ids: torch.Tensor, ntokens: int) -> float:
    model.eval()
    data = example_batchify(ids, 10)
    total, count = 0.0, 0
    for inputs, targets in example_batches(data, 35):
        output = model(inputs).view(-1, ntokens)
        total += F.nll_loss(output, targets, reduction="sum").item()
        count += targets.numel()
    return math.exp(total / count)


# --------------------------------------------------------------------------- labkit


class Budget(Callback):
    """Starts the clock when fit starts and stops the run at the first epoch end past the deadline."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    @property
    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def on_fit_start(self, state) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, state) -> None:
        if self.left <= 0:
            state.stop = True


class BudgetedBatches:
    """Yields the windows of `batches` until the budget runs out (then the epoch ends early)."""

    def __init__(self, batches: BpttBatches, budget: Budget) -> None:
        self.batches, self.budget = batches, budget
        self.tokens = self.count = 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for i, (x, y) in enumerate(self.batches):
            if self.budget.left <= 0 and i:  # at least one batch per epoch: the engine needs one
                return
            self.tokens += y.numel()
            self.count += 1
            yield x, y


def budget_cosine(optimizer: torch.optim.Optimizer, warmup: int, budget: Budget):
    """Linear warm-up over `warmup` steps, then cosine decay over the remaining wall-clock budget."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(max(1.0 - budget.left / budget.seconds, 0.0), 1.0)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class KeepBest(Callback):
    """The lab's best.pt, in memory: the weights of the epoch with the lowest hold-out perplexity."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.weights = model, None

    def on_epoch_end(self, state) -> None:
        if state.history.best("val_perplexity")[0] == state.epoch:
            self.weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def train_labkit(ids: torch.Tensor, ntokens: int, budget_s: float, cfg: lab.Config,
                 holdout: torch.Tensor | None = None) -> dict:
    """The lab's recipe within `budget_s` seconds; with `holdout`, evaluated after every epoch (a partial last
    epoch included) and the best epoch's weights returned, as the lab's best.pt."""
    torch.manual_seed(cfg.seed)
    model = lab.language_model(cfg, ntokens)
    optimizer = make_optimizer(cfg, model)  # fused AdamW, weight decay on matrices only
    budget = Budget(budget_s)
    train = BudgetedBatches(BpttBatches(ids, cfg.batch_size, cfg.bptt), budget)
    scheduler = budget_cosine(optimizer, cfg.warmup_steps, budget)
    keep = KeepBest(model) if holdout is not None else None
    held = {"val": BpttBatches(holdout, cfg.eval_batch_size, cfg.bptt)} if holdout is not None else None
    start = time.perf_counter()
    history = fit(model, train, epochs=10_000, optimizer=optimizer, task=LMTask(), metrics=("perplexity",),
                  eval_data=held, scheduler=scheduler, scheduler_interval="step", device="cpu",
                  grad_clip=cfg.grad_clip, callbacks=[budget, Progress(False), *([keep] if keep else [])])
    seconds = time.perf_counter() - start
    if keep is not None and keep.weights is not None:
        model.load_state_dict(keep.weights)
    return {"model": model, "seconds": seconds, "tokens": train.tokens, "batches": train.count,
            "holdout_ppl": history.best("val_perplexity")[1] if keep is not None else math.nan,
            "epochs": train.count / len(train.batches), "batch": cfg.batch_size, "history": history}


# --------------------------------------------------------------------------- tooling: the same work


class ExampleNLL(Task):
    """The example's loss on its own sequence-first windows: NLL of the log-softmax output."""

    def __init__(self, ntokens: int) -> None:
        self.ntokens = ntokens

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
        data, targets = batch
        return F.nll_loss(model(data).view(-1, self.ntokens), targets), None, targets


class Windows:
    """`count` consecutive windows of the example's batches, from where the last chunk stopped."""

    def __init__(self, source: torch.Tensor, bptt: int = 35) -> None:
        self.source, self.bptt, self.position, self.count = source, bptt, 0, 0

    def take(self, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        while len(out) < count:
            if self.position >= self.source.size(0) - 1:
                self.position = 0
            seq_len = min(self.bptt, len(self.source) - 1 - self.position)
            i = self.position
            out.append((self.source[i: i + seq_len], self.source[i + 1: i + 1 + seq_len].reshape(-1)))
            self.position += seq_len
        return out


def tooling(ids: torch.Tensor, ntokens: int, batches: int, rounds: int, seed: int) -> dict[str, list[float]]:
    """tokens/s per round of the reference recipe through the example's loop and through `fit`, both at the
    CPU's best settings: bf16 autocast where the CPU runs it natively (`labkit.device.amp_dtype`), else fp32
    (`fit(amp=True)`; the example's loop under the same `torch.autocast`)."""
    dtype = amp_dtype(torch.device("cpu"), True)
    source = example_batchify(ids, 20)
    sides = {}
    for name in ("reference loop", "labkit fit"):
        torch.manual_seed(seed)
        model = ReferenceTransformer(ntokens)
        model.train()
        sides[name] = {"model": model, "windows": Windows(source), "speeds": [],
                       "optimizer": torch.optim.SGD(model.parameters(), lr=5.0)}
    task = ExampleNLL(ntokens)
    chunk = max(1, batches // rounds)
    for round_ in range(rounds):
        order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
        for name in order:
            side = sides[name]
            chunk_batches = side["windows"].take(chunk)
            tokens = sum(t.numel() for _, t in chunk_batches)
            start = time.perf_counter()
            if name == "reference loop":
                model = side["model"]
                for data, targets in chunk_batches:
                    model.zero_grad()
                    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                        loss = F.nll_loss(model(data).view(-1, ntokens), targets)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
                    for p in model.parameters():
                        p.data.add_(p.grad, alpha=-5.0)
            else:
                fit(side["model"], chunk_batches, epochs=1, optimizer=side["optimizer"], task=task,
                    device="cpu", grad_clip=0.25, amp=True, callbacks=[Progress(False)])
            side["speeds"].append(tokens / (time.perf_counter() - start))
    return {name: side["speeds"] for name, side in sides.items()}


def tokens_flops(ntokens: int, seed: int, bsz: int = 20, bptt: int = 35) -> float:
    """FLOPs per training token of the example's Transformer: one forward + backward of a (bptt, bsz) window
    counted by `FlopCounterMode` (`throughput.training_flops`), over its bptt x bsz tokens."""
    torch.manual_seed(seed)
    model = ReferenceTransformer(ntokens)
    data = torch.randint(0, ntokens, (bptt, bsz))
    targets = torch.randint(0, ntokens, (bptt * bsz,))
    return training_flops(model, data, targets,
                          loss_fn=lambda output, target: F.nll_loss(output.view(-1, ntokens), target)) / (bptt * bsz)


# --------------------------------------------------------------------------- recipe: each side's default


#: the grid `--tune` searches for labkit's recipe (lr, dropout); everything else is the lab's default
GRID = [{"lr": lr, "dropout": dropout} for lr in (2e-3, 4e-3, 8e-3) for dropout in (0.2, 0.4)]


def split_valid(ids: torch.Tensor, fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, hold-out): the first 1 - `fraction` of the stream and the rest."""
    cut = int(ids.numel() * (1 - fraction))
    return ids[:cut], ids[cut:]


def labkit_perplexity(model: nn.Module, ids: torch.Tensor, cfg: lab.Config) -> float:
    result = evaluate(model, BpttBatches(ids, cfg.eval_batch_size, cfg.bptt), task=LMTask(),
                      metrics=("perplexity",), device="cpu")
    return float(result["perplexity"])


def tune(train_ids: torch.Tensor, holdout_ids: torch.Tensor, ntokens: int, budget: float, seed: int,
         base: dict) -> tuple[dict, list[tuple[dict, float]]]:
    """The grid setting with the lowest hold-out perplexity (test text is not read)."""
    scores = []
    for setting in GRID:
        cfg = lab.LAB.config("full", "modern", seed=seed, **{**base, **setting})
        ours = train_labkit(train_ids, ntokens, budget, cfg, holdout_ids)
        scores.append((setting, ours["holdout_ppl"]))
        print(f"  tune: lr {setting['lr']:g}, dropout {setting['dropout']:g}: hold-out ppl {scores[-1][1]:.1f}",
              flush=True)
    return min(scores, key=lambda item: item[1])[0], scores


def load_data(quick: bool) -> tuple[wikitext.Corpus, str]:
    shared = config.shared_datasets()
    if shared is not None and (shared / "wikitext-2" / "valid.txt").is_file():
        corpus = wikitext.read_corpus(shared / "wikitext-2", splits=("valid", "test"))
        return corpus, f"WikiText-2 from {shared / 'wikitext-2'}"
    root = Path(tempfile.mkdtemp(prefix="lm_bench_"))
    sizes = (1000, wikitext.NUM_TOKENS["valid"], wikitext.NUM_TOKENS["test"])
    wikitext.write_synthetic_wikitext(root, tokens=sizes, vocab_size=24_000, noise=0.04, seed=0)
    return (wikitext.read_corpus(root, splits=("valid", "test")),
            "synthetic corpus of WikiText-2's size (../shared absent: numbers for correctness only)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small budgets and test text: a correctness run")
    parser.add_argument("--tune", action="store_true", help="choose labkit's lr and dropout on the hold-out text")
    parser.add_argument("--budget", type=float, default=None, help="training seconds per recipe run (default 120)")
    parser.add_argument("--tune-budget", type=float, default=None, help="seconds per grid run (default: --budget)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per side for the recipe figure (default 3)")
    parser.add_argument("--tooling-batches", type=int, default=None, help="batches per side (default 240)")
    parser.add_argument("--seed", type=int, default=1111, help="the first seed")
    parser.add_argument("--peak-seconds", type=float, default=None,
                        help="seconds of 2048x2048 matmuls per precision (default 1.5; 0.3 with --quick)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is steadier on a busy machine)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = args.budget or (3.0 if args.quick else 120.0)
    tune_budget = args.tune_budget or budget  # chosen for the time it is then compared in
    seeds = [args.seed + i for i in range(max(1, args.seeds))]

    corpus, source = load_data(args.quick)
    ntokens = len(corpus.vocab)
    train_ids, holdout_ids = split_valid(corpus["valid"])
    test_ids = corpus["test"][:20_000] if args.quick else corpus["test"]
    print(f"data: {source}; train on valid.txt's first 90 % ({train_ids.numel():,} tokens), choose on its last 10 % "
          f"({holdout_ids.numel():,}), test on test.txt ({test_ids.numel():,}"
          f"{', first 20,000: --quick' if args.quick else ''}"
          f"); vocabulary {ntokens:,} words")
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}")

    # 1. tooling, and the limit it is measured against
    cpu = torch.device("cpu")
    peaks = matmul_flops(cpu, args.peak_seconds if args.peak_seconds is not None else (0.3 if args.quick else 1.5))
    dtype = amp_dtype(cpu, True)
    flops = tokens_flops(ntokens, args.seed)
    n_tool = args.tooling_batches or (8 if args.quick else 240)
    speeds = tooling(train_ids, ntokens, n_tool, rounds=4, seed=args.seed)
    ref_tool, lab_tool = (statistics.median(speeds[k]) for k in ("reference loop", "labkit fit"))
    tooling_ratio = lab_tool / ref_tool
    fraction = peak_fraction(lab_tool, flops, peaks, dtype)

    # 2. choosing labkit's setting on the hold-out text
    base: dict = {}
    if args.tune:
        print(f"tuning labkit's recipe on the hold-out text ({len(GRID)} settings x {tune_budget:.0f} s):", flush=True)
        chosen, _ = tune(train_ids, holdout_ids, ntokens, tune_budget, args.seed, base)
        base.update(chosen)
        print(f"  chosen: lr {chosen['lr']:g}, dropout {chosen['dropout']:g}", flush=True)
    default = lab.LAB.config("laptop", "modern")  # the lab's recipe at the size whose time the budget is
    setting = {"lr": base.get("lr", default.lr), "dropout": base.get("dropout", default.dropout)}

    # 3. the recipes, sides alternated: ref, labkit, labkit, ref, ref, labkit, ...
    runs: dict[str, list[dict]] = {"reference": [], "labkit": []}
    for i, seed in enumerate(seeds):
        order = ("reference", "labkit") if i % 2 == 0 else ("labkit", "reference")
        for side in order:
            if side == "reference":
                r = train_reference(train_ids, ntokens, budget, seed, 5.0, holdout_ids)
                r["ppl"] = evaluate_reference(r["model"], test_ids, ntokens)
            else:
                cfg = lab.LAB.config("full", "modern", seed=seed, **setting)
                r = train_labkit(train_ids, ntokens, budget, cfg, holdout_ids)
                r["ppl"] = labkit_perplexity(r["model"], test_ids, cfg)
            r["tps"] = r["tokens"] / r["seconds"]
            del r["model"]
            runs[side].append(r)
            print(f"  {side} seed {seed}: {r['batches']} batches in {r['seconds']:.0f} s, test ppl {r['ppl']:.1f}",
                  flush=True)
    med = {side: statistics.median(r["ppl"] for r in rs) for side, rs in runs.items()}
    tps = {side: statistics.median(r["tps"] for r in rs) for side, rs in runs.items()}
    recipe_ratio = med["reference"] / med["labkit"]

    print()
    print("| question | reference | labkit | labkit better by |")
    print("|---|---:|---:|---:|")
    print(f"| tooling: the example's model and recipe, {precision_name(dtype)} (the CPU's best), tokens/s (median of "
          f"4 rounds, {n_tool} batches a side) | {ref_tool:,.0f} | {lab_tool:,.0f} | {tooling_ratio:.2f}x |")
    print(f"| tooling: peak_fraction = training FLOP/s ({flops / 1e6:,.2f} MFLOPs per token, FlopCounterMode) / "
          f"{precision_name(dtype)} matmul FLOP/s | {peak_fraction(ref_tool, flops, peaks, dtype):.3f} | "
          f"{fraction:.3f} | |")
    print(f"| recipe: test perplexity after {budget:.0f} s of training, min / median / max over {len(seeds)} seeds | "
          f"{spread_text([r['ppl'] for r in runs['reference']])} | {spread_text([r['ppl'] for r in runs['labkit']])} | "
          f"{recipe_ratio:.2f}x |")
    print(f"| recipe runs: tokens/s (median) | {tps['reference']:,.0f} | {tps['labkit']:,.0f} | "
          f"{tps['labkit'] / tps['reference']:.2f}x |")
    print(f"| recipe runs: epochs over the training text (median) | "
          f"{statistics.median(r['epochs'] for r in runs['reference']):.2f} | "
          f"{statistics.median(r['epochs'] for r in runs['labkit']):.2f} | |")
    print(f"\nlabkit's setting: lr {setting['lr']:g}, dropout {setting['dropout']:g} "
          f"({'chosen now on the hold-out text' if args.tune else 'the lab default'}); reference: SGD lr 5 (the "
          "example README's Transformer command). The test text was read once per run and chose nothing.")
    print(f"RESULT tooling_ratio={tooling_ratio:.2f} recipe_ratio={recipe_ratio:.2f} ppl={med['labkit']:.1f} "
          f"ref_ppl={med['reference']:.1f} tps_ratio={tps['labkit'] / tps['reference']:.2f} "
          f"peak_fraction={fraction:.3f} precision={precision_name(dtype)} {matmul_text(peaks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
