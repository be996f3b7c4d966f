# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,nbgrader,-all
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version,-kernelspec
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
# ---

# %% [markdown]
# # Lab 05 — A word-level Transformer language model on WikiText-2
#
# A *language model* gives a probability to the next word given the words before it. You will train a small
# causal Transformer on WikiText-2 (Wikipedia articles, about 2 million training words, rare words replaced
# by `<unk>`), measure it by **perplexity**, let it write text, look at its attention and compare how far
# back a Transformer and a convolutional network can see.
#
# The model has the sizes of PyTorch's `word_language_model` example (embedding 200, feed-forward 200,
# 2 layers, 2 heads, dropout 0.2). The recipe differs: an **adaptive softmax** output (defined below) and
# AdamW (learning rate 2·10⁻³, weight decay 0.1) with warm-up and a cosine decay, settings chosen on held-out
# text. In the same two minutes of training it reaches a lower test perplexity than the example's recipe
# (440–449 against 454–500 over 3 runs each: `results/lm/README.md`).
#
# The first cell picks the size. *Smoke* (`LABKIT_SMOKE=1`, for the tests) trains a tiny model on generated
# text and only shows that the code runs. *Laptop* (the default without a GPU) reads the shared copy of
# WikiText-2, which has only `valid.txt` and `test.txt`: it trains on `valid.txt` but its last 10 %,
# validates on that 10 % and tests once on `test.txt`, so its perplexities are not comparable with published
# ones. *Full* (the default on a GPU) is the course's run: 6 epochs of `train.txt`.

# %%
import matplotlib.pyplot as plt
import torch

from labkit import runner
from labkit.device import describe_device, model_device
from labkit.lab import choose_size
from labkit.labs import lm as lab
from labkit.labs.lm.text import (
    attention_receptive_field,
    conv_receptive_field,
    generate,
    layer_cost_table,
    layer_costs,
    layers_to_reach,
    pick_sentence,
    plot_attention,
    plot_receptive_field,
    plot_word_frequencies,
)
from labkit.results import check_against_reference, show_reference
from labkit.summary import layer_table
from labkit.tables import show_table
from labkit.widgets import TrainingPanel

SIZE = None  # "smoke", "laptop" or "full"; None: laptop on a CPU, full on a GPU (or LABKIT_SIZE)
SIZE, WHY = choose_size(SIZE)
CFG = lab.LAB.config(SIZE)
print(describe_device(CFG.device), f"· {SIZE} size: {WHY}")

# %% [markdown]
# ## A look at the data
#
# Each file has one paragraph per line, tokens separated by spaces. As in the PyTorch example, `<eos>` (end
# of sentence) is appended to every line, so the model also learns where paragraphs end. Words are numbered
# by how often they occur in the training text.

# %%
lab.download_data(CFG)  # WikiText-2 (checksummed) when the files this size reads are missing
data = runner.load_data(lab.LAB, CFG)
corpus, vocab = data.source.corpus, data.source.vocab
print("data:", data.description)
for role in data.source.streams:
    print(f"{role:>5}: {data.split_label(role)}")
print(f"vocabulary: {len(vocab):,} words; the first ones: {vocab.itos[:12]}")
print("the text starts:", " ".join(vocab.decode(data.source.streams["train"][:40])))
assert "<eos>" in vocab and vocab.decode(vocab.encode(["the"])[0]) == ["the"]

# %% [markdown]
# Word counts fall off like a power law (Zipf's law): a few words make up a large share of the text and
# most words are rare. A full softmax scores all 33,278 words for every position; the **adaptive softmax**
# gives the 2,000 most frequent words a full-size output and the rare ones smaller, cheaper clusters.

# %%
fig = plot_word_frequencies(corpus, CFG.train_split, top=15)
if SIZE == "smoke":
    fig.suptitle("smoke size: a generated Markov text over ~60 words, not WikiText-2", fontsize=9)
plt.show()
counts = corpus.counts(CFG.train_split)
top_share = counts.sort(descending=True).values[:100].sum() / counts.sum()
print(f"the 100 most frequent words are {top_share:.0%} of the training text")

# %% [markdown]
# ## Batches: streams, `batchify` and bptt windows
#
# The training text is one long stream of word ids. `batchify` cuts it into `batch_size` equal rows read in
# parallel; the model sees windows of `bptt` = 35 words of every row, and the target window is the input
# window shifted by one word.

# %%
inputs, targets = next(iter(data.train))
print(data.train)
print("input :", " ".join(vocab.decode(inputs[0, :12])))
print("target:", " ".join(vocab.decode(targets[0, :12])))
assert torch.equal(inputs[0, 1:], targets[0, :-1])

# %% [markdown]
# ## The model
#
# Word embedding plus sinusoidal positions, two blocks of *causal* self-attention and a feed-forward layer
# (each with LayerNorm and a residual connection), then the adaptive-softmax output. *Causal*: position *t*
# may only attend to positions ≤ *t*, so no future word leaks in.

# %%
model = lab.LAB.build_model(CFG, data.info)
table = layer_table(model, example=torch.zeros(1, CFG.bptt, dtype=torch.long), max_depth=3)
print(table)
full = lab.LAB.build_model(CFG.replace(adaptive=False), data.info)
print(f"parameters: {model.num_parameters():,} with the adaptive softmax, "
      f"{full.num_parameters():,} with a full softmax")
assert table.row("output").output_shape == (CFG.bptt, len(vocab))

# %% [markdown]
# ## How far back a layer sees: convolutions vs self-attention
#
# The *receptive field* of a layer is the number of words one output position can draw on. For a stack of
# causal 1-D convolutions with kernel *k* (optionally dilated: kernel taps spaced apart, the spacing doubling
# each layer as in WaveNet), and for self-attention over a window of `bptt` words:

# %%
window = CFG.bptt
plot_receptive_field(n_layers=8, context=window, kernel_size=3)
plt.show()
plain, dilated = conv_receptive_field(8, 3), conv_receptive_field(8, 3, dilation_growth=2)
print("conv k=3           :", plain)
print("conv k=3, dilated  :", dilated)
print("self-attention     :", attention_receptive_field(8, window))
print(f"to see {window} words: {layers_to_reach(window, 3)} plain conv layers, "
      f"{layers_to_reach(window, 3, 2)} dilated ones, 1 attention layer")
assert layers_to_reach(35, 3) == 17 and layers_to_reach(35, 3, 2) == 5

# %% [markdown]
# The cost of one layer of each kind on this lab's window (n = bptt words of width d = emsize), counted as in
# Vaswani et al. 2017, Table 1 (the mixing across positions only):

# %%
show_table(layer_cost_table(CFG.bptt, CFG.emsize, kernel_size=3))
costs = {c["layer"]: c for c in layer_costs(CFG.bptt, CFG.emsize, 3)}
assert costs["self-attention"]["max_path"] == 1 and costs["recurrence (RNN)"]["sequential"] == CFG.bptt
assert costs["self-attention"]["weights"] == 4 * CFG.emsize**2  # independent of the window length

# %% [markdown]
# **Question (Transformer vs CNN).** Both course reports were asked how a Transformer and a CNN differ in
# capturing context. The companion report (`../shared/seeds/001_…txt`) answered, among other things:
# "Transformer 是基于自注意力机制的序列到序列模型，其中包含 Encoder 和 Decoder 两部分" (a sequence-to-sequence
# model with an encoder and a decoder), the CNN "对于输入数据的每个不同区域使用不同的权重进行加权汇聚" (uses
# different weights for each region of the input), and "Transformer 由于需要考虑全局信息，因此模型参数较多"
# (needs more parameters because it considers global context). Using the receptive fields and the table
# above, explain how each captures context, and judge each of the three claims for this lab's model.

# %% [markdown] tags=["exercise"] nbgrader={"points": 4}
# **Your answer:**
#
# ### BEGIN SOLUTION
# A CNN builds context *locally and hierarchically*: each layer combines neighbouring positions, so its reach
# grows by k − 1 words per layer (1 + L·(k − 1): 17 plain layers of kernel 3 for a 35-word window, 5 dilated
# ones). Its weights depend only on the relative position, the same for every input. Self-attention
# computes its mixing weights *from the content*: each word's query is compared with every earlier word's key
# and takes a weighted average of their values, at any distance inside the window, from the first layer on
# (path length 1); it knows word order only through the positional encoding. Depth adds rounds of combining,
# not reach, and beyond its window a Transformer sees nothing (an LSTM carries a compressed memory).
# The three claims: (1) No encoder–decoder is needed: this lab's model is a decoder-only stack of causal
# self-attention blocks; an encoder–decoder maps one sequence to another (translation). (2) A convolution
# *shares* one kernel across all positions; what it lacks is content-dependent weights and a direct path
# between distant words. (3) An attention layer's weights are its four d×d projections, 4·d² whatever the
# window length; what grows with the window n is the computation (n²·d scores) and their memory, as the
# table shows.
# ### END SOLUTION

# %% [markdown]
# **Question W.** With bptt = 35, why do the first words of every window get a worse prediction than the
# last ones?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# The Transformer starts each window from scratch: the first word of a window has no context at all,
# the 35th has 34 words of it, so the early positions predict from less information. (An LSTM that
# carries its state from one window to the next does not have this problem; nor does a Transformer
# that caches the previous window's keys and values, as Transformer-XL does.)
# ### END SOLUTION

# %% [markdown]
# ## Training
#
# The loss is the mean cross-entropy per word and **perplexity = exp(loss)**: "as confused as a uniform
# choice among that many words". The checkpoint with the best validation perplexity is tested once at the
# end. At laptop size the training text is small (196,000 words) and the model over-fits it: in the committed
# reference run the validation perplexity was best after epoch 1 (454.8) and rose to 622.3 by epoch 5 while
# the training perplexity kept falling (645.6 → 74.5). Checkpoints go to `runs/lm/checkpoints/`, TensorBoard
# logs to `runs/lm/tensorboard/`. The slider's learning rate is AdamW's peak after warm-up.

# %%
def train(epochs, lr, plot):
    return runner.run(lab.LAB, CFG.replace(epochs=epochs, lr=lr), data=data, callbacks=[plot])


panel = TrainingPanel(train, epochs=CFG.epochs, lr=CFG.lr, epoch_choices=(1, 20, 1), lr_range=(1e-4, 3e-2),
                      title=f"Lab 05 · Transformer LM · {SIZE} size"
                      + (" (generated text)" if SIZE == "smoke" else " on WikiText-2"))
panel.show()
run = panel.result
print(run.history.table([k for k in run.history if k.endswith("perplexity")]))
val_key = "val_perplexity"
print(f"best validation perplexity {run.history.best(val_key)[1]:.1f}; uniform guessing would be {len(vocab):,}")
if "test" in run.final:
    print(f"test perplexity on {data.split_label('test')}, epoch {run.chosen_epoch}'s weights: "
          f"{run.final['test']['perplexity']:.1f}")
assert run.history.best(val_key)[1] < len(vocab) / 2, "the model should do far better than guessing"

# %% [markdown]
# ## Generating text
#
# The model gives a distribution over the next word; we draw one, append it and repeat. The **temperature**
# *T* divides the scores (*logits*) before the softmax; `top_k` keeps only the *k* highest-scored words; a
# fixed `seed` gives the same text every time. From the command line:
# `labkit generate runs/lm/checkpoints/best.pt --words 50 --temperature 1.0`.

# %%
prompt = " ".join(pick_sentence(corpus, lab.sample_split(CFG), 8, 16)[:4])  # from text it did not train on
for temperature in (0.5, 1.0, 1.5):
    sample = generate(run.model, vocab, prompt, n_words=30, temperature=temperature, seed=0, context=CFG.bptt)
    print(f"--- temperature {temperature}\n{sample.text}\n")
again = generate(run.model, vocab, prompt, n_words=30, temperature=1.0, seed=0, context=CFG.bptt)
unknown = generate(run.model, vocab, "the zorblax", n_words=5, seed=0, context=CFG.bptt)
print("note:", unknown.notes)
assert again.words == generate(run.model, vocab, prompt, n_words=30, temperature=1.0, seed=0, context=CFG.bptt).words
assert unknown.unknown == ["zorblax"]

# %% [markdown]
# ## Your turn — the sampling distribution
#
# Write `next_word_probs(logits, temperature, top_k)`: given the model's scores for the next word (a 1-D
# tensor over the vocabulary), return the probabilities to sample from — the softmax of `logits /
# temperature`, where only the `top_k` highest scores are kept (the others get probability 0; `top_k=None`
# keeps all).

# %% tags=["exercise"]
def next_word_probs(logits, temperature=1.0, top_k=None):
    """Probabilities of the next word: softmax(logits / temperature) over the top_k highest logits."""
    ### BEGIN SOLUTION
    scaled = logits / temperature
    if top_k is not None and top_k < scaled.numel():
        kth = torch.topk(scaled, top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    return torch.softmax(scaled, dim=-1)
    ### END SOLUTION


# %% nbgrader={"points": 4}
from labkit.labs.lm.check import check_next_word_probs

check_next_word_probs(next_word_probs)

# %% [markdown]
# Now sample ten words yourself with your function, one at a time, feeding each word back in:

# %%
generator = torch.Generator().manual_seed(0)
device = model_device(run.model)
ids = vocab.encode(prompt.split())[0].unsqueeze(0).to(device)
run.model.eval()
with torch.no_grad():
    for _ in range(10):
        logits = run.model(ids[:, -CFG.bptt:])[0, -1].float().cpu()
        next_id = torch.multinomial(next_word_probs(logits, 0.8, 20), 1, generator=generator)
        ids = torch.cat([ids, next_id.to(device).view(1, 1)], dim=1)
print(" ".join(vocab.decode(ids[0])))

# %% [markdown]
# ## What attention looks at
#
# For one sentence, each layer's attention weights: row = the word being predicted *from*, column = an
# earlier word it takes information from (each row sums to 1; above the diagonal all zero, the causal mask).
# Look for heads that specialise, e.g. on the previous word or on punctuation. (Not at smoke size: random
# text, tiny model.)

# %%
sentence = pick_sentence(corpus, lab.sample_split(CFG), 8, 16)
maps = run.model.attention_maps(vocab.encode(sentence)[0].to(device))
for layer, weights in enumerate(maps, start=1):
    plot_attention(weights, sentence, title=f"attention of layer {layer}",
                   note="smoke size: synthetic text, tiny model" if SIZE == "smoke" else f"{SIZE} size")
    plt.show()
assert all(torch.all(w.triu(1) == 0) for w in maps)

# %% [markdown]
# ## The model graph in TensorBoard
#
# The run wrote the model graph to `runs/lm/tensorboard/`: `tensorboard --logdir runs/lm`, then the
# **Graphs** tab (double-click `TransformerLM` to open it) and **Scalars** for the curves.

# %%
events = sorted((run.out_dir / "tensorboard").glob("events.out.tfevents.*"))
print(f"{len(events)} TensorBoard event file(s) in {run.out_dir / 'tensorboard'}")
assert events

# %% [markdown]
# ## What you should see: the reference run
#
# `python -m labkit reproduce lm --size laptop` committed its numbers and curves under `results/lm/laptop/`
# (how it was measured: `results/lm/README.md`). The check says when your test perplexity is far above it.

# %%
reference_size = "laptop" if SIZE == "smoke" else SIZE  # smoke size has no reference: show laptop's
show_reference("lm", reference_size)
if "test" in run.final:
    check_against_reference("lm", SIZE, "modern", "test_perplexity", run.final["test"]["perplexity"],
                            tolerance=50, higher_is_better=False)

# %% [markdown]
# ## Questions
#
# **Question 1.** A model that predicts every word with probability 1/|V| has which perplexity?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# Exactly |V|, the vocabulary size (33,278 words for WikiText-2's full vocabulary): the cross-entropy of
# every word is −log(1/|V|) = log |V|, and the perplexity is its exponential.
# ### END SOLUTION

# %% [markdown]
# **Question 2.** Why does the training perplexity come out higher than the validation perplexity in
# the first epoch?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# The training figure is averaged over the whole epoch while the model was still learning (its early
# batches were scored by an almost untrained model), and with dropout on; the validation figure is
# measured once, at the end of the epoch, by the final weights without dropout. In the laptop-size
# reference run: 645.6 for training against 454.8 for validation after epoch 1.
# ### END SOLUTION

# %% [markdown]
# **Question 3.** Can the embedding and the output weights be tied when the output is an adaptive
# softmax? What stops this lab's model from doing it?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# Yes, they can: Baevski & Auli (2019, "Adaptive input representations for neural language modeling")
# give the input embedding the same clusters as the adaptive softmax (an *adaptive input*: a full-size
# embedding for the frequent words, smaller ones projected up to the model width for the rare clusters)
# and share each cluster's embedding and projection with the output; fairseq implements these tied
# adaptive weights. What is impossible is tying PyTorch's `nn.AdaptiveLogSoftmaxWithLoss` to a plain
# `nn.Embedding` directly: the embedding is one |V|×d matrix, while the adaptive softmax holds a d-wide
# matrix for the head (frequent words plus one entry per cluster) and, for each rare cluster, a smaller
# d/4ᶦ-wide matrix behind a projection, so there is no single matrix to share. This lab builds a plain
# embedding, so `--tied` needs the full softmax (`--no-adaptive`).
# ### END SOLUTION

# %% [markdown]
# **Question 4.** What would you change to let the Transformer use more context?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# A longer bptt window: the attention scores grow with the square of the window length (n²·d operations
# per layer), the weights not at all. Or carry context between windows: cache the keys and values of the
# previous window and let the next one attend to them, as Transformer-XL does.
# ### END SOLUTION

# %% [markdown]
# **Question 5.** Both course reports trained PyTorch's `word_language_model` Transformer (SGD, gradients
# clipped to norm 0.25 by default). The course report (`000_…txt`) kept the script's default lr 20 and
# logged, at the end of epoch 1, `valid ppl 1583.01`, with training perplexities of 4,100–6,400 through the
# second half of the epoch. The companion report (`001_…txt`) used lr 5, as the example's README does for the
# Transformer: `end of epoch 1 … valid ppl 312.56`, and after 6 epochs `test ppl 195.58`. What does the
# difference say about lr 20 for this model, and how would you choose the learning rate without the test set?

# %% [markdown] tags=["exercise"] nbgrader={"points": 3}
# **Your answer:**
#
# ### BEGIN SOLUTION
# lr 20 is too large for this Transformer: from batch 400 on its training loss stayed at 8.3–9.0
# (perplexity 4,100–8,100, against 505 by batch 1,200 at lr 5) and its validation perplexity after one epoch
# was 5× worse. The script's default 20 serves its LSTM models; its README runs the Transformer at lr 5.
# Clipping bounds a clipped step's length to lr × 0.25 = 5 at lr 20 (1.25 at lr 5): it stops a single
# huge gradient from blowing the weights up, but the lr still sets how far every clipped step jumps, so it
# does not rescue a learning rate that is too high. Both figures are one run
# each, on different machines, but the gap (1,583 against 313) is far larger than run-to-run noise. To
# choose: try a few learning rates spaced by factors of 2–3 (e.g. 1, 2, 5, 10, 20) for an epoch or two and
# keep the one with the lowest *validation* perplexity; the test set is read once, at the end, for the
# chosen model (test ppl 195.58 in the companion report).
# ### END SOLUTION

