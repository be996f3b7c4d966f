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
# A *language model* gives a probability to the next word given the words before it. You will train a
# small causal Transformer on WikiText-2 (Wikipedia articles, about 2 million training words, rare words
# replaced by `<unk>`), measure it by **perplexity**, let it write text at different *temperatures*, look
# at what its attention looks at, and compare how far back a Transformer and a convolutional network can
# see.
#
# The model has the sizes of PyTorch's `word_language_model` example (embedding 200, feed-forward 200,
# 2 layers, 2 heads). What differs is the recipe: an **adaptive softmax** output (cheap on the 33,278-word
# vocabulary), AdamW (weight decay 0.1) with warm-up and a cosine decay, and dropout 0.4 instead of 0.2:
# the faster recipe sees the data more often per minute and over-fits sooner without it.
# `bench/lm_bench.py` compares it with the example's recipe.
#
# The first cell picks the size of the run. *Smoke size* (`LABKIT_SMOKE=1`, used by the tests) trains a
# tiny model for 3 epochs on a synthetic corpus written in WikiText's layout (a random Markov chain over
# ~60 words), so the numbers only show that the code runs. *Laptop size* (the default without a GPU)
# reads the shared copy of WikiText-2, which has only `valid.txt` and `test.txt`: it trains the full-size
# model for 5 epochs on `valid.txt` but its last 10%, validates (and picks the best checkpoint) on that
# held-out 10% and tests once on `test.txt`; its perplexities are not comparable with published ones,
# which train on `train.txt`. A whole Run All at this size took 4 min 2 s (measured with
# `LABKIT_SIZE=laptop jupyter nbconvert --execute`, one thread of this course's 2-core CPU at load
# average ~2–3; the 5 epochs were 214 s of it). On the same CPU shared with four other long runs (load
# 9–11) the committed reference run took 19 min 26 s for the same numbers. *Full size* (the
# default on a GPU) is the course's run: 6 epochs of `$LABKIT_DATA/wikitext-2/train.txt` (downloaded with
# checksums if missing: `python data_prep/wikitext2.py`). The discussion is about the real data at full
# size.

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
# Each file has one paragraph per line, tokens separated by spaces. As in the PyTorch example, a line is
# split on spaces and `<eos>` (end of sentence) is appended, so the model also learns where paragraphs
# end. The vocabulary collects every word of the files; words are numbered by how often they occur in the
# training text (the adaptive softmax needs the frequent words first). `runner.load_data` reads the files
# the size uses (`lab.download_data` fetches them first where they are missing) and cuts them into batches.

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
# Word counts fall off like a power law (Zipf's law): a straight line on log–log axes. A few words
# (*the*, *,*, *.*, *of*) make up a large share of the text, and most words are rare. That is why a
# full softmax, which scores all 33,278 words for every position, wastes most of its work, and why
# the adaptive softmax gives the 2,000 most frequent words a full-size output and the rare ones
# smaller, cheaper clusters.

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
# The whole training text is one long stream of word ids. `batchify` cuts it into `batch_size` equal
# rows that are read in parallel; the model then sees windows of `bptt` = 35 words of every row. The
# target of each word is simply the next word, so the target window is the input window shifted by one.
# `data.train` serves exactly these windows.

# %%
inputs, targets = next(iter(data.train))
print(data.train)
print("input :", " ".join(vocab.decode(inputs[0, :12])))
print("target:", " ".join(vocab.decode(targets[0, :12])))
assert torch.equal(inputs[0, 1:], targets[0, :-1])

# %% [markdown]
# ## The model
#
# Word embedding (×√200) plus sinusoidal positions, two blocks of *causal* self-attention and a
# feed-forward layer (each with LayerNorm before it and a residual connection), a final LayerNorm and the
# adaptive-softmax output. "Causal" means position *t* may only attend to positions ≤ *t*: the
# attention calls `scaled_dot_product_attention(..., is_causal=True)`, so no future word leaks in.

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
# A causal 1-D convolution with kernel *k* lets each position see *k − 1* earlier words, and stacking
# layers adds up: with *k* = 3 the last position sees 3, 5, 7, … words — `1 + L·(k−1)` after *L* layers.
# Doubling the dilation each layer (WaveNet) makes the reach grow exponentially (3, 7, 15, 31, …). One
# self-attention layer instead connects every position directly to all earlier positions in its window:
# the whole 35-word window after the first layer, with a path of length 1 between any two words.

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
# **How the two capture context.** A CNN builds context *locally and hierarchically*: early layers combine
# neighbouring words into phrases, later layers combine phrases; its reach is fixed by the architecture
# (17 plain layers of kernel 3 for a 35-word window). Its weights are **shared across positions** (the
# same kernel slides over the whole window) and depend on *relative position* only, the same for every
# input. Self-attention computes its mixing weights *from the content*: each word asks (query) which
# earlier words are relevant (keys) and takes a weighted average of them (values), at any distance inside
# the window. It knows word order only through the positional encoding. Depth in a Transformer does not
# add reach; it adds rounds of combining (e.g. first find the subject, then use it). Beyond its window a
# Transformer sees nothing at all, whereas an LSTM carries a (compressed) memory of everything read so far.
#
# Three beliefs from the course report, corrected:
#
# * *Attention needs an encoder–decoder.* No: this lab's model is a **decoder-only** stack of causal
#   self-attention blocks (GPT-style); an encoder–decoder is for mapping one sequence to another
#   (translation). A causal language model needs only the mask that hides future words.
# * *A CNN has a separate weight for every position.* No: a convolution shares one kernel across all
#   positions; what it lacks is content-dependent weights and a direct path between distant words.
# * *Global context costs more parameters.* No: an attention layer's weights are its four d×d projections,
#   4·d² whatever the window length n; what grows with n is the **computation** (n² scores per head) and
#   the memory for them. The table below counts both for this lab's own sizes.
#
# One layer of each kind on this lab's window (n = bptt words of width d = emsize), counted as in
# Vaswani et al. 2017, Table 1 (operations of the mixing across positions; the projections of attention,
# 4·n·d² more, are left out there too):

# %%
show_table(layer_cost_table(CFG.bptt, CFG.emsize, kernel_size=3))
costs = {c["layer"]: c for c in layer_costs(CFG.bptt, CFG.emsize, 3)}
assert costs["self-attention"]["max_path"] == 1 and costs["recurrence (RNN)"]["sequential"] == CFG.bptt
assert costs["self-attention"]["weights"] == 4 * CFG.emsize**2  # independent of the window length

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
# Training runs through labkit's runner and engine (`labkit.runner.run`, `labkit.engine.fit`) with the
# language-model task: the loss is the mean cross-entropy per word and **perplexity = exp(loss)**, "as
# confused as a uniform choice among that many words". A model that knows nothing scores the vocabulary
# size. The
# checkpoint with the best validation perplexity is tested once at the end. At laptop size the training
# text is small (196,000 words) and the model over-fits it: in the reference run (below) the validation
# perplexity was best after epoch 1 (523.5; 526.3 after epoch 2) and then rose to 655.3 by epoch 5 while
# the training perplexity kept falling (741 → 116) — the reason the test uses the best validation
# checkpoint (test perplexity 498.2) rather than the last one. Checkpoints (with the
# vocabulary) go to `runs/lm/checkpoints/`, TensorBoard logs with the model graph to
# `runs/lm/tensorboard/`.
#
# Move the sliders and press **Train** to retrain; the learning rate is AdamW's peak after warm-up.

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
# The model gives a distribution over the next word; we draw one, append it and repeat. The
# **temperature** *T* divides the scores before the softmax: *T* < 1 sharpens the distribution (safe,
# repetitive text), *T* > 1 flattens it (surprising, often ungrammatical text). `top_k` keeps only the
# *k* most likely words. A fixed `seed` gives the same text every time. The same is available as
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
# Write `next_word_probs(logits, temperature, top_k)`: given the model's scores for the next word (a
# 1-D tensor over the vocabulary), return the probabilities to sample from — the softmax of
# `logits / temperature`, where only the `top_k` highest scores are kept (the others get probability 0;
# `top_k=None` keeps all). Hint: `torch.topk(logits, k).values[-1]` is the k-th highest score, and a logit
# of `-inf` becomes probability 0 after the softmax.

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


# %%
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
# For one sentence the trained model's attention weights of each layer and head: row = the word being
# predicted *from*, column = an earlier word it takes information from (each row sums to 1; everything
# above the diagonal is zero — the causal mask). Heads can specialise, for instance attending mostly to
# the previous word (a strong diagonal just below the main one) or to the sentence start or punctuation;
# look for it in your maps. At smoke size the text is a random Markov chain and the model tiny, so the
# maps show no such pattern.

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
# The run wrote the model graph (traced with a window of 35 words) to `runs/lm/tensorboard/`. Start TensorBoard
# with `tensorboard --logdir runs/lm` and open the **Graphs** tab: double-click `TransformerLM` to open the
# embedding, the two blocks (attention, feed-forward) and the adaptive softmax; **Scalars** has the loss
# and perplexity curves (and the test perplexity).

# %%
events = sorted((run.out_dir / "tensorboard").glob("events.out.tfevents.*"))
print(f"{len(events)} TensorBoard event file(s) in {run.out_dir / 'tensorboard'}")
assert events

# %% [markdown]
# ## What you should see: the reference run
#
# `python -m labkit reproduce lm --size laptop` trained the modern recipe at laptop size on this
# course's 2-core CPU and committed its numbers and curves under `results/lm/laptop/`. Your run at
# laptop size should land close to it; the check says when your test perplexity is far above it.

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
# reference run: 741 for training against 523.5 for validation after epoch 1.
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
