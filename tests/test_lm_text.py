"""LM task in the shared engine, generation, receptive-field numbers."""

from __future__ import annotations

import pytest
import torch

from labkit.callbacks import Progress
from labkit.engine import evaluate, fit
from labkit.labs.lm.data import EOS, BpttBatches, Vocabulary, read_corpus, write_synthetic_wikitext
from labkit.labs.lm.model import LSTMLM, TransformerLM
from labkit.labs.lm.text import (
    LMTask,
    attention_receptive_field,
    conv_receptive_field,
    generate,
    layers_to_reach,
    pick_sentence,
    plot_attention,
    plot_receptive_field,
    plot_word_frequencies,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = write_synthetic_wikitext(tmp_path_factory.mktemp("wt"), tokens=(4000, 800, 800), vocab_size=40)
    return read_corpus(root)


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_loss_falls_on_a_tiny_corpus(corpus, kind):
    torch.manual_seed(0)
    vocab = len(corpus.vocab)
    model = (TransformerLM(vocab, emsize=32, nhid=32, dropout=0.0, adaptive_softmax=True)
             if kind == "transformer" else LSTMLM(vocab, emsize=32, nhid=32, dropout=0.0))
    train = BpttBatches(corpus["train"], 16, 20)
    val = BpttBatches(corpus["valid"], 8, 20)
    before = evaluate(model, val, task=LMTask(), metrics=("perplexity",), device="cpu")
    history = fit(model, train, epochs=3, optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
                  task=LMTask(), eval_data=val, metrics=("perplexity",), grad_clip=1.0, device="cpu",
                  callbacks=[Progress(False)])
    # untrained: about uniform over the vocabulary; trained: far below it
    assert before["perplexity"] > 0.6 * vocab
    assert history["val_perplexity"][-1] < 0.5 * before["perplexity"]
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_lm_task_weights_the_loss_per_token(corpus):
    """evaluate() over windows equals the mean NLL over every target word."""
    torch.manual_seed(0)
    model = TransformerLM(len(corpus.vocab), emsize=16, nhid=16).eval()
    val = BpttBatches(corpus["valid"], 4, 13)  # the last window is shorter
    result = evaluate(model, val, task=LMTask(), metrics=("perplexity",), device="cpu")
    with torch.no_grad():
        nll = torch.cat([model.token_nll(x, y)[0] for x, y in val])
    assert nll.numel() == val.num_tokens
    assert result["loss"] == pytest.approx(nll.mean().item(), rel=1e-5)
    assert result["perplexity"] == pytest.approx(nll.mean().exp().item(), rel=1e-5)


def test_lm_task_carries_lstm_state_within_a_pass_only(corpus):
    model = LSTMLM(len(corpus.vocab), emsize=8, nhid=8)
    task = LMTask()
    batches = iter(BpttBatches(corpus["train"], 4, 10))
    task.start(model, True)
    task(model, next(batches))
    assert task.state is not None and not task.state[0].requires_grad
    task.start(model, False)
    assert task.state is None
    with pytest.raises(ValueError, match="no state"):
        LMTask(carry_state=True)(TransformerLM(len(corpus.vocab), emsize=8, nhid=8), next(batches))


def test_generation_is_deterministic_for_a_seed(corpus):
    torch.manual_seed(0)
    model = TransformerLM(len(corpus.vocab), emsize=16, nhid=16)
    torch.manual_seed(123)  # generation must not depend on (or disturb) the global RNG
    first = generate(model, corpus.vocab, "the", n_words=25, temperature=1.0, seed=7)
    state = torch.get_rng_state()
    second = generate(model, corpus.vocab, "the", n_words=25, temperature=1.0, seed=7)
    other = generate(model, corpus.vocab, "the", n_words=25, temperature=1.0, seed=8)
    assert torch.equal(state, torch.get_rng_state())
    assert first.words == second.words and len(first.words) == 25
    assert other.words != first.words
    assert model.training  # mode restored


def test_generation_temperature_and_top_k(corpus):
    torch.manual_seed(0)
    model = LSTMLM(len(corpus.vocab), emsize=16, nhid=16).eval()
    top1 = generate(model, corpus.vocab, "the", n_words=10, top_k=1, seed=1)
    assert top1.words == generate(model, corpus.vocab, "the", n_words=10, top_k=1, seed=2).words
    # top_k=1 is greedy decoding: always the most likely next word
    ids = [corpus.vocab["the"]]
    with torch.no_grad():
        for _ in range(10):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    assert top1.words == corpus.vocab.decode(ids[1:])
    # a temperature near 0 is greedy too; a high one spreads the choice over many words
    assert generate(model, corpus.vocab, "the", n_words=10, temperature=1e-4, seed=3).words == top1.words
    hot = generate(model, corpus.vocab, "the", n_words=40, temperature=5.0, seed=3)
    assert len(set(hot.words)) > len(set(top1.words))
    with pytest.raises(ValueError, match="temperature"):
        generate(model, corpus.vocab, "the", temperature=0)


def test_generation_top_k_samples_only_among_the_k_best(corpus):
    torch.manual_seed(0)
    model = LSTMLM(len(corpus.vocab), emsize=16, nhid=16).eval()
    result = generate(model, corpus.vocab, "the", n_words=30, top_k=3, temperature=3.0, seed=4)
    ids = [corpus.vocab["the"]] + [corpus.vocab[w] for w in result.words]
    with torch.no_grad():
        scores = model(torch.tensor([ids[:-1]]))[0]
    for step, word in enumerate(ids[1:]):
        assert word in scores[step].topk(3).indices.tolist()
    assert len(set(result.words)) > 1  # a hot temperature still samples, among the three
    with pytest.raises(ValueError, match="top_k"):
        generate(model, corpus.vocab, "the", top_k=0)


def test_unknown_prompt_words_become_unk_with_a_note(corpus):
    model = TransformerLM(len(corpus.vocab), emsize=16, nhid=16)
    result = generate(model, corpus.vocab, "the zebra-unicorn of", n_words=5, seed=0, allow_unk=False)
    assert result.unknown == ["zebra-unicorn"]
    assert "zebra-unicorn" in result.notes[0] and "<unk>" in result.notes[0]
    assert "<unk>" not in result.words
    assert result.text.startswith("the zebra-unicorn of")


def test_generation_text_breaks_lines_at_eos():
    model = TransformerLM(3, emsize=8, nhid=8)
    vocab = Vocabulary(["a", EOS, "<unk>"])
    result = generate(model, vocab, "a", n_words=40, seed=0)
    assert result.text.count("\n") == result.words.count(EOS) - (result.words[-1] == EOS)


def test_receptive_field_numbers():
    # causal conv, kernel 3: each layer adds 2 words of history
    assert conv_receptive_field(4, kernel_size=3) == [3, 5, 7, 9]
    # dilations 1, 2, 4, 8: the reach doubles
    assert conv_receptive_field(4, kernel_size=3, dilation_growth=2) == [3, 7, 15, 31]
    # one self-attention layer already sees the whole window
    assert attention_receptive_field(2, context=35) == [35, 35]
    assert layers_to_reach(35, kernel_size=3) == 17
    assert layers_to_reach(35, kernel_size=3, dilation_growth=2) == 5
    with pytest.raises(ValueError):
        conv_receptive_field(0)


def test_plots_draw(corpus):
    fig = plot_receptive_field(n_layers=6, context=35)
    lines = fig.axes[0].get_lines()
    assert [int(y) for y in lines[0].get_ydata()] == conv_receptive_field(6)
    words = corpus.vocab.decode(corpus["valid"][:6])
    model = TransformerLM(len(corpus.vocab), emsize=16, nhid=16)
    fig = plot_attention(model.attention_maps(corpus["valid"][:6])[0], words)
    assert len(fig.axes) == 3  # two heads and a colour bar
    with pytest.raises(ValueError, match="words"):
        plot_attention(torch.ones(6, 6), words[:5])
    fig = plot_word_frequencies(corpus, "train", top=5)
    assert len(fig.axes) == 2


def test_pick_sentence_finds_a_clean_line(corpus):
    words = pick_sentence(corpus, "valid", min_words=5, max_words=40)
    assert 5 <= len(words) <= 40 and "=" not in words and EOS not in words and "<unk>" not in words
    with pytest.raises(ValueError, match="no line"):
        pick_sentence(corpus, "valid", min_words=1000, max_words=2000)
