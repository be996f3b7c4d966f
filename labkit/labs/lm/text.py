"""Language-model pieces around the shared engine: the LM task, text generation, context reach and the lab's
figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

from labkit.checkpoint import unwrap
from labkit.engine import Task
from labkit.errors import LabkitError
from labkit.labs.lm.data import EOS, UNK, Corpus, Vocabulary
from labkit.labs.lm.model import LanguageModel, State, detach_state
from labkit.plots import new_figure
from labkit.tables import Table


def _language_model(model: nn.Module) -> LanguageModel:
    inner = unwrap(model)
    if not isinstance(inner, LanguageModel):
        raise TypeError(f"expected a labkit language model (TransformerLM or LSTMLM), got {type(inner).__name__}")
    return inner


class LMTask(Task):
    """Next-word prediction for the engine: `(inputs, targets)` -> `(mean NLL per word, None, targets)`; the engine
    weights it by the target count, so `exp(val_loss)` is the exact perplexity. No outputs: `(tokens, vocab)` scores
    would cost what the adaptive softmax saves. `carry_state` (default: for recurrent models) keeps an LSTM's
    state between batches, detached (truncated BPTT), reset at each pass by `start`."""

    def __init__(self, carry_state: bool | None = None) -> None:
        self.carry_state = carry_state
        self.state: State = None

    def start(self, model: nn.Module, training: bool) -> None:
        self.state = None  # a new pass over the text starts from a blank memory

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, None, Any]:
        inputs, targets = batch
        lm = _language_model(model)
        carry = lm.carries_state if self.carry_state is None else self.carry_state
        if carry and not lm.carries_state:
            raise ValueError(f"{type(lm).__name__} has no state to carry; use carry_state=False")
        # through `model`, not `lm.loss`: a DistributedDataParallel wrapper syncs gradients only after its forward
        loss, state = model(inputs, targets, self.state if carry else None)
        self.state = detach_state(state) if carry else None
        return loss, None, targets


# --------------------------------------------------------------------------- generation


def _check_sampling(temperature: float, top_k: int | None) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature} (use a small value like 0.1 for near-greedy)")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1 or None, got {top_k}")


def _sample(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator) -> int:
    """One word id drawn among the `top_k` best-scored candidates (all words when None), each weighted by
    exp(score / temperature)."""
    candidates = torch.arange(logits.numel())
    if top_k is not None and top_k < logits.numel():
        logits, candidates = torch.topk(logits, top_k)
    weights = torch.softmax(logits.float() / temperature, dim=-1)
    return int(candidates[torch.multinomial(weights, 1, generator=generator)])


@dataclass
class Generation:
    """Generated text, the words it was made of, and notes (e.g. unknown prompt words)."""

    prompt: list[str]
    words: list[str]
    unknown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """Prompt and continuation as running text, one line per `<eos>`."""
        return " ".join(self.prompt + self.words).replace(f" {EOS} ", "\n").replace(EOS, "\n").strip()

    def __str__(self) -> str:
        return self.text


@torch.no_grad()
def generate(model: nn.Module, vocab: Vocabulary, prompt: str | Sequence[str] = "", n_words: int = 50,
             temperature: float = 1.0, top_k: int | None = None, seed: int = 0, allow_unk: bool = True,
             context: int | None = None) -> Generation:
    """Sample `n_words` words after `prompt` (temperature, top-k), with a private generator seeded by `seed`.

    Unknown prompt words become `<unk>` (listed in `notes`); an empty prompt starts after an `<eos>`. A
    Transformer reads the last `context` words (pass the training `bptt` to stay within the lengths it learned).
    """
    _check_sampling(temperature, top_k)  # before any work
    lm = _language_model(model)
    if len(vocab) != lm.vocab_size:
        raise ValueError(f"vocabulary has {len(vocab)} words but the model predicts {lm.vocab_size}")
    words = prompt.split() if isinstance(prompt, str) else list(prompt)
    notes: list[str] = []
    if words:
        ids, unknown = vocab.encode(words)
        if unknown:
            shown = ", ".join(repr(w) for w in dict.fromkeys(unknown))
            notes.append(f"not in the vocabulary, read as {UNK}: {shown}")
    else:
        if vocab.eos_index is None:
            raise ValueError(f"an empty prompt needs {EOS} in the vocabulary; give a prompt")
        ids, unknown = torch.tensor([vocab.eos_index]), []
    device = next(lm.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    was_training = lm.training
    lm.eval()
    try:
        tokens = ids.to(device).unsqueeze(0)  # (1, time): everything read or written so far
        state: State = None
        pending = tokens
        out: list[int] = []
        for _ in range(n_words):
            if lm.carries_state:
                scores, state = lm.step(pending, state)
            else:
                limit = context or lm.max_context
                window = tokens[:, -limit:] if limit else tokens
                scores, _ = lm.step(window)
            logits = scores[0, -1].float().cpu()
            if not allow_unk and vocab.unk_index is not None:
                logits[vocab.unk_index] = float("-inf")
            next_id = _sample(logits, temperature, top_k, generator)
            out.append(next_id)
            pending = torch.tensor([[next_id]], device=device)
            tokens = torch.cat([tokens, pending], dim=1)
    finally:
        lm.train(was_training)
    return Generation(prompt=words, words=vocab.decode(out), unknown=unknown, notes=notes)


# --------------------------------------------------------------------------- context reach


def conv_receptive_field(n_layers: int, kernel_size: int = 3, dilation_growth: int = 1) -> list[int]:
    """Words each layer of a stack of causal 1-D convolutions sees, the current one included: `1 + sum_l (k - 1)
    * d_l` with dilations `d_l = dilation_growth ** l` (1: linear growth; 2, WaveNet-style: doubling)."""
    if n_layers < 1 or kernel_size < 1 or dilation_growth < 1:
        raise ValueError("n_layers, kernel_size and dilation_growth must be at least 1")
    reach, fields = 1, []
    for layer in range(n_layers):
        reach += (kernel_size - 1) * dilation_growth**layer
        fields.append(reach)
    return fields


def attention_receptive_field(n_layers: int, context: int) -> list[int]:
    """Words each causal self-attention layer sees: the whole window from layer 1 (depth adds no reach)."""
    if n_layers < 1 or context < 1:
        raise ValueError("n_layers and context must be at least 1")
    return [context] * n_layers


def layers_to_reach(context: int, kernel_size: int = 3, dilation_growth: int = 1) -> int:
    """How many causal convolution layers it takes to see `context` words."""
    layers = 1
    while conv_receptive_field(layers, kernel_size, dilation_growth)[-1] < context:
        layers += 1
    return layers


def layer_costs(context: int, d_model: int, kernel_size: int = 3) -> list[dict[str, Any]]:
    """What one layer of each kind costs on a window of `context` words of width `d_model`, with the
    counts of Vaswani et al. 2017, Table 1 (n = context, d = d_model, k = kernel_size):

    * operations per layer (multiply-adds of the mixing across positions): self-attention n²·d (the
      scores QKᵀ and the weighted sum, counted once as there), recurrence n·d², convolution k·n·d²;
    * sequential steps (operations that must wait for the previous one): 1, n, 1;
    * maximum path length between two words of the window, in layers or steps: 1 for attention,
      n − 1 for a recurrence, and for causal convolutions the layers it takes to see n words
      (`layers_to_reach`: about n/k with contiguous kernels, about log_k n with dilations doubling);
    * weights per layer, which do not grow with n for any of them: self-attention 4·d² (the query, key,
      value and output projections, which also cost 4·n·d² operations that Table 1 leaves out), a plain
      recurrence 2·d² (an LSTM 8·d²), a convolution k·d² (biases left out everywhere).
    """
    for name, value in (("context", context), ("d_model", d_model), ("kernel_size", kernel_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise LabkitError(f"layer_costs: {name} must be a whole number of at least 1, got {value!r}.")
    if kernel_size < 2 and context > 1:
        raise LabkitError("layer_costs: a kernel of 1 word never sees an earlier word; give kernel_size >= 2.")
    n, d, k = context, d_model, kernel_size
    return [
        {"layer": "self-attention", "operations": n * n * d, "formula": "n²·d", "sequential": 1,
         "max_path": 1, "weights": 4 * d * d},
        {"layer": "recurrence (RNN)", "operations": n * d * d, "formula": "n·d²", "sequential": n,
         "max_path": max(n - 1, 1), "weights": 2 * d * d},
        {"layer": f"convolution, kernel {k}", "operations": k * n * d * d, "formula": "k·n·d²", "sequential": 1,
         "max_path": layers_to_reach(n, k), "weights": k * d * d},
        {"layer": f"dilated convolution, kernel {k}", "operations": k * n * d * d, "formula": "k·n·d²",
         "sequential": 1, "max_path": layers_to_reach(n, k, 2), "weights": k * d * d},
    ]


def layer_cost_table(context: int, d_model: int, kernel_size: int = 3) -> Table:
    """`layer_costs` as a table (rendered in a notebook, Markdown text under print)."""
    rows = [[c["layer"], f"{c['formula']} = {c['operations']:,}", c["sequential"], c["max_path"], f"{c['weights']:,}"]
            for c in layer_costs(context, d_model, kernel_size)]
    return Table([f"one layer (n = {context} words, d = {d_model})", "operations per layer", "sequential steps",
                  "max path length", "weights"], rows, numeric_from=1)


def plot_receptive_field(n_layers: int = 8, context: int = 35, kernel_size: int = 3,
                         figure: Figure | None = None) -> Figure:
    """Reach per layer: causal convolutions (plain and dilated) vs one self-attention layer."""
    fig = figure or new_figure((6.4, 3.8))
    ax = fig.subplots()
    layers = list(range(1, n_layers + 1))
    plain = conv_receptive_field(n_layers, kernel_size)
    dilated = conv_receptive_field(n_layers, kernel_size, dilation_growth=2)
    attention = attention_receptive_field(n_layers, context)
    ax.plot(layers, plain, "o-", label=f"1-D conv, kernel {kernel_size}")
    ax.plot(layers, dilated, "s-", label=f"1-D conv, kernel {kernel_size}, dilation 2^l")
    ax.plot(layers, attention, "^-", label=f"self-attention (window {context})")
    ax.axhline(context, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log", base=2)  # dilated reach doubles per layer: a straight line here
    ax.set_xlabel("layer")
    ax.set_ylabel("words visible to the last position")
    ax.set_title("How far back can each layer see?")
    ax.set_xticks(layers)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_attention(weights: torch.Tensor, words: Sequence[str], title: str = "attention",
                   figure: Figure | None = None, note: str = "") -> Figure:
    """Heat-map(s) of attention weights `(time, time)` or `(heads, time, time)`, rows = queries, one panel a head;
    the figure grows with the longest word so no label is cut off."""
    weights = weights.detach().float().cpu()
    if weights.dim() == 2:
        weights = weights.unsqueeze(0)
    heads, t, _ = weights.shape
    if t != len(words):
        raise ValueError(f"{len(words)} words for attention over {t} positions")
    longest = max((len(str(w)) for w in words), default=1)
    label_inches = 0.07 * longest  # room for the rotated labels under each map and beside the first one
    side = max(2.6, min(4.2, 0.22 * t))
    fig = figure or new_figure((side * heads + label_inches + 1.4, side + label_inches + 1.0))
    axes = fig.subplots(1, heads, squeeze=False)[0]
    for head, ax in enumerate(axes):
        image = ax.imshow(weights[head].numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(t), words, rotation=90, fontsize=7)
        ax.set_yticks(range(t), words, fontsize=7)
        ax.set_xlabel("attends to (earlier word)", fontsize=8)
        if head == 0:
            ax.set_ylabel("query word", fontsize=8)
        ax.set_title(f"head {head + 1}" if heads > 1 else "weights", fontsize=9)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="attention weight")
    fig.suptitle(f"{title} ({note})" if note else title, fontsize=10)
    return fig


def pick_sentence(corpus: Corpus, split: str, min_words: int = 8, max_words: int = 16) -> list[str]:
    """The first line of `split` with `min_words`..`max_words` words and no heading (`=`) or `<unk>`."""
    words = corpus.vocab.decode(corpus[split])
    line: list[str] = []
    for word in words:
        if word != EOS:
            line.append(word)
            continue
        if min_words <= len(line) <= max_words and "=" not in line and UNK not in line:
            return line
        line = []
    raise ValueError(f"no line of {min_words} to {max_words} words without headings or {UNK} in {split}")


def plot_word_frequencies(corpus: Corpus, split: str, top: int = 15, figure: Figure | None = None) -> Figure:
    """Rank-frequency plot on log-log axes (Zipf's law) and the most common words."""
    counts = corpus.counts(split)
    sorted_counts = torch.sort(counts[counts > 0], descending=True).values.double()
    fig = figure or new_figure((10, 3.6))
    left, right = fig.subplots(1, 2)
    ranks = torch.arange(1, sorted_counts.numel() + 1)
    left.loglog(ranks.numpy(), sorted_counts.numpy(), ".", ms=2)
    left.set_xlabel("rank of word")
    left.set_ylabel("count")
    left.set_title(f"{split}: {sorted_counts.numel():,} distinct words, {int(counts.sum()):,} tokens")
    left.grid(alpha=0.3)
    common = corpus.most_common(split, top)
    right.barh([w for w, _ in common][::-1], [c for _, c in common][::-1])
    right.set_title(f"{top} most common words in {split}")
    right.set_xlabel("count")
    return fig
