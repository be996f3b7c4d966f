"""Word-level language models on `(batch, time)` word ids: a causal Transformer and an LSTM (the example's sizes),
with a full or adaptive softmax, behind one interface (`LanguageModel`): `model(tokens)` -> scores whose
log-softmax is the next-word distribution; `model(tokens, targets, state)` -> (mean NLL, new state), the training
path (the adaptive softmax never builds the full distribution there); `model.step` for generation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

State = tuple[torch.Tensor, torch.Tensor] | None


def default_cutoffs(vocab_size: int) -> list[int]:
    """Adaptive-softmax cluster boundaries: a 2,000-word head, tails to 10,000 and beyond; a small vocabulary
    gets one boundary at a quarter of it."""
    cutoffs = [c for c in (2000, 10000, 50000) if c < vocab_size - 1]
    return cutoffs or [max(1, vocab_size // 4)]


class OutputLayer(nn.Module):
    """Hidden vectors -> next-word scores and losses, with a full or an adaptive softmax (exact, cheap on rare
    words; it needs frequency-sorted word ids, `read_corpus`'s default)."""

    def __init__(self, dim: int, vocab_size: int, adaptive: bool = False, cutoffs: Sequence[int] | None = None,
                 div_value: float = 4.0) -> None:
        super().__init__()
        self.adaptive = adaptive
        self.vocab_size = vocab_size
        if adaptive:
            cutoffs = list(cutoffs) if cutoffs else default_cutoffs(vocab_size)
            if not all(0 < c < vocab_size for c in cutoffs) or cutoffs != sorted(set(cutoffs)):
                raise ValueError(f"adaptive softmax cutoffs must increase strictly inside (0, {vocab_size}), "
                                 f"got {cutoffs}")
            self.softmax = nn.AdaptiveLogSoftmaxWithLoss(dim, vocab_size, cutoffs, div_value=div_value)
        else:
            self.decoder = nn.Linear(dim, vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores `(..., vocab)` whose log-softmax is the next-word log-distribution."""
        if self.adaptive:
            flat = hidden.reshape(-1, hidden.size(-1))
            with torch.autocast(flat.device.type, enabled=False):  # its index_copy_ mixes dtypes under autocast
                return self.softmax.log_prob(flat.float()).reshape(*hidden.shape[:-1], self.vocab_size)
        return self.decoder(hidden)

    def nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of each target word, flattened to `(N,)`, in float32."""
        flat = hidden.reshape(-1, hidden.size(-1))
        targets = targets.reshape(-1)
        if self.adaptive:
            with torch.autocast(flat.device.type, enabled=False):
                return -self.softmax(flat.float(), targets).output
        return F.cross_entropy(self.decoder(flat).float(), targets, reduction="none")


class LanguageModel(nn.Module):
    """Shared interface of the word-level models (see the module docstring)."""

    vocab_size: int
    embedding: nn.Embedding
    output: OutputLayer

    def _attach_output(self, hidden: int, *, tie_weights: bool, adaptive_softmax: bool,
                       cutoffs: Sequence[int] | None) -> None:
        """The output layer both models share, after their body (the example's creation order, so a
        seed gives the example's initial weights), initialised as in the example (uniform ±0.1, zero
        bias) together with `self.embedding`; `tie_weights` makes the decoder reuse the embedding."""
        emsize = self.embedding.embedding_dim
        if tie_weights and adaptive_softmax:
            raise ValueError("tie_weights shares the embedding with a full-softmax decoder; the adaptive "
                             "softmax has no single decoder matrix. Choose one of the two.")
        if tie_weights and hidden != emsize:
            raise ValueError(f"tie_weights needs nhid == emsize (the decoder reuses the embedding), "
                             f"got {hidden} and {emsize}")
        self.output = OutputLayer(hidden, self.vocab_size, adaptive=adaptive_softmax, cutoffs=cutoffs)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if not adaptive_softmax:
            nn.init.zeros_(self.output.decoder.bias)
            nn.init.uniform_(self.output.decoder.weight, -0.1, 0.1)
            if tie_weights:
                self.output.decoder.weight = self.embedding.weight

    def features(self, tokens: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None,
                state: State = None) -> torch.Tensor | tuple[torch.Tensor, State]:
        """Next-word scores `(batch, time, vocab)`; with `targets`, `loss`'s (mean NLL, new state), through the
        forward so a DistributedDataParallel wrapper syncs the gradients."""
        if targets is not None:
            return self.loss(tokens, targets, state)
        hidden, _ = self.features(tokens, state)
        return self.output(hidden)

    def step(self, tokens: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        hidden, state = self.features(tokens, state)
        return self.output(hidden), state

    def token_nll(self, tokens: torch.Tensor, targets: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """Per-token negative log-likelihood `(batch * time,)` and the new state."""
        hidden, state = self.features(tokens, state)
        return self.output.nll(hidden, targets), state

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """Mean negative log-likelihood per target word (`exp` of it is the perplexity)."""
        nll, state = self.token_nll(tokens, targets, state)
        return nll.mean(), state

    carries_state = False  # recurrent models carry their state from one batch to the next
    max_context: int | None = None  # the longest context the model reads at once (None: unbounded)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# --------------------------------------------------------------------------- Transformer


class PositionalEncoding(nn.Module):
    """Sinusoidal positions added to the embeddings (as in "Attention is all you need")."""

    def __init__(self, dim: int, max_len: int = 5000) -> None:
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(position * div_term)
        table[:, 1::2] = torch.cos(position * div_term[: dim // 2])
        self.register_buffer("table", table, persistent=False)  # rebuilt, not checkpointed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and x.size(1) > self.table.size(0):
            raise ValueError(f"sequence of {x.size(1)} tokens is longer than the positional table "
                             f"({self.table.size(0)}); build the model with a larger max_len")
        return x + self.table[: x.size(1)].to(x.dtype)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t attends to positions <= t only."""

    def __init__(self, dim: int, nhead: int, dropout: float) -> None:
        super().__init__()
        if dim % nhead:
            raise ValueError(f"emsize {dim} must be divisible by the number of heads {nhead}")
        self.nhead = nhead
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.nhead, d // self.nhead).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v  # each (batch, heads, time, head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(x)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(x.shape))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Attention probabilities `(batch, heads, query, key)`, computed explicitly."""
        q, k, _ = self._heads(x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        t = x.size(1)
        future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        return scores.masked_fill(future, float("-inf")).softmax(-1)


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attention(norm(x)), then x + feed-forward(norm(x))."""

    def __init__(self, dim: int, nhead: int, nhid: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, nhead, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, nhid), nn.GELU(), nn.Dropout(dropout), nn.Linear(nhid, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.ff(self.norm2(x)))


class TransformerLM(LanguageModel):
    """Causal Transformer LM: scaled embedding + sinusoidal positions, `nlayers` pre-norm blocks (attention of
    `nhead` heads, feed-forward of width `nhid`), a final LayerNorm and the output layer."""

    def __init__(self, vocab_size: int, emsize: int = 200, nhead: int = 2, nhid: int = 200, nlayers: int = 2,
                 dropout: float = 0.2, tie_weights: bool = False, adaptive_softmax: bool = False,
                 cutoffs: Sequence[int] | None = None, max_len: int = 5000) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.emsize = emsize
        self.max_context = max_len
        self.embedding = nn.Embedding(vocab_size, emsize)
        self.positions = PositionalEncoding(emsize, max_len)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(emsize, nhead, nhid, dropout) for _ in range(nlayers))
        self.norm = nn.LayerNorm(emsize)
        self._attach_output(emsize, tie_weights=tie_weights, adaptive_softmax=adaptive_softmax, cutoffs=cutoffs)

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2:
            raise ValueError(f"expected (batch, time) word ids, got shape {tuple(tokens.shape)}")
        return self.drop(self.positions(self.embedding(tokens) * math.sqrt(self.emsize)))

    def features(self, tokens: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        x = self._embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.norm(x), None

    @torch.no_grad()
    def attention_maps(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights of one sentence `(time,)` or `(1, time)`, in eval mode: one `(heads, time, time)`
        tensor per layer (row = query word, column = the earlier word it attends to)."""
        if tokens.dim() == 1:
            tokens = tokens.unsqueeze(0)
        if tokens.size(0) != 1:
            raise ValueError(f"attention_maps takes one sentence, got a batch of {tokens.size(0)}")
        was_training = self.training
        self.eval()
        try:
            maps = []
            x = self._embed(tokens)
            for block in self.blocks:
                maps.append(block.attn.weights(block.norm1(x))[0])
                x = block(x)
            return maps
        finally:
            self.train(was_training)


# --------------------------------------------------------------------------- LSTM


class LSTMLM(LanguageModel):
    """LSTM language model (embedding -> stacked LSTM -> output layer), as in the example; its `(h, c)` state can
    be carried from one bptt window to the next."""

    carries_state = True

    def __init__(self, vocab_size: int, emsize: int = 200, nhid: int = 200, nlayers: int = 2, dropout: float = 0.2,
                 tie_weights: bool = False, adaptive_softmax: bool = False,
                 cutoffs: Sequence[int] | None = None) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, emsize)
        self.drop = nn.Dropout(dropout)
        self.rnn = nn.LSTM(emsize, nhid, nlayers, dropout=dropout if nlayers > 1 else 0.0, batch_first=True)
        self._attach_output(nhid, tie_weights=tie_weights, adaptive_softmax=adaptive_softmax, cutoffs=cutoffs)

    def features(self, tokens: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        if tokens.dim() != 2:
            raise ValueError(f"expected (batch, time) word ids, got shape {tuple(tokens.shape)}")
        if state is not None and state[0].size(1) != tokens.size(0):
            state = None  # a batch of another size (e.g. the last, shorter one) starts afresh
        out, state = self.rnn(self.drop(self.embedding(tokens)), state)
        return self.drop(out), state


def detach_state(state: State) -> State:
    """Cut the autograd history of a carried state (truncated backprop through time)."""
    if state is None:
        return None
    return tuple(s.detach() for s in state)  # type: ignore[return-value]


def build_language_model(kind: str, vocab_size: int, **options) -> LanguageModel:
    """`"transformer"` -> `TransformerLM`, `"lstm"` -> `LSTMLM`, with keyword options."""
    kinds = {"transformer": TransformerLM, "lstm": LSTMLM}
    if kind not in kinds:
        raise ValueError(f"unknown language model {kind!r}: expected one of {sorted(kinds)}")
    if kind == "lstm":
        options.pop("nhead", None)
        options.pop("max_len", None)
    return kinds[kind](vocab_size, **options)
