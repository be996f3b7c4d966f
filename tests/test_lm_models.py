"""Language models: causality, output layers, attention maps, LSTM state."""

from __future__ import annotations

import pytest
import torch

from labkit.labs.lm.model import (
    LSTMLM,
    OutputLayer,
    TransformerLM,
    build_language_model,
    default_cutoffs,
    detach_state,
)

VOCAB = 50


def _tokens(batch=2, time=12, seed=0):
    return torch.randint(0, VOCAB, (batch, time), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("adaptive", [False, True])
def test_transformer_is_causal(adaptive):
    """Changing a later word leaves the outputs at every earlier position unchanged."""
    torch.manual_seed(0)
    model = TransformerLM(VOCAB, emsize=32, nhid=32, adaptive_softmax=adaptive).eval()
    tokens = _tokens()
    changed = tokens.clone()
    changed[:, 7] = (changed[:, 7] + 1) % VOCAB
    with torch.no_grad():
        before, after = model(tokens), model(changed)
    assert before.shape == (2, 12, VOCAB)
    torch.testing.assert_close(before[:, :7], after[:, :7])
    assert (before[:, 7:] - after[:, 7:]).abs().max() > 1e-4  # the change is seen from position 7 on


def test_lstm_is_causal_too():
    model = LSTMLM(VOCAB, emsize=16, nhid=16).eval()
    tokens = _tokens()
    changed = tokens.clone()
    changed[:, 5] = (changed[:, 5] + 1) % VOCAB
    with torch.no_grad():
        torch.testing.assert_close(model(tokens)[:, :5], model(changed)[:, :5])


def test_default_sizes_follow_the_example():
    model = TransformerLM(33_278)
    assert model.emsize == 200 and len(model.blocks) == 2
    assert model.blocks[0].attn.nhead == 2 and model.blocks[0].ff[0].out_features == 200
    assert model.drop.p == 0.2
    lstm = LSTMLM(33_278)
    assert lstm.rnn.hidden_size == 200 and lstm.rnn.num_layers == 2 and lstm.rnn.dropout == 0.2


@pytest.mark.parametrize("adaptive", [False, True])
def test_output_layer_scores_are_a_distribution_and_loss_matches_them(adaptive):
    torch.manual_seed(0)
    layer = OutputLayer(16, VOCAB, adaptive=adaptive)
    hidden = torch.randn(3, 5, 16)
    targets = torch.randint(0, VOCAB, (3, 5))
    log_probs = torch.log_softmax(layer(hidden), dim=-1)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 5))
    expected = -log_probs.gather(-1, targets.unsqueeze(-1)).reshape(-1)
    torch.testing.assert_close(layer.nll(hidden, targets), expected, rtol=1e-4, atol=1e-5)


def test_adaptive_softmax_has_fewer_parameters_and_sensible_cutoffs():
    assert default_cutoffs(33_278) == [2000, 10000]
    assert default_cutoffs(60) == [15]
    full = TransformerLM(33_278)
    adaptive = TransformerLM(33_278, adaptive_softmax=True)
    assert adaptive.num_parameters() < full.num_parameters() - 4_000_000
    with pytest.raises(ValueError, match="cutoffs"):
        OutputLayer(8, 100, adaptive=True, cutoffs=[50, 20])


def test_weight_tying_shares_the_embedding():
    model = TransformerLM(VOCAB, emsize=16, nhid=16, tie_weights=True)
    assert model.output.decoder.weight is model.embedding.weight
    with pytest.raises(ValueError, match="Choose one"):
        TransformerLM(VOCAB, tie_weights=True, adaptive_softmax=True)
    with pytest.raises(ValueError, match="nhid == emsize"):
        LSTMLM(VOCAB, emsize=16, nhid=32, tie_weights=True)


def test_attention_maps_are_causal_probabilities():
    model = TransformerLM(VOCAB, emsize=16, nhid=16, nhead=2, nlayers=3)
    maps = model.attention_maps(_tokens(1, 9)[0])
    assert len(maps) == 3 and maps[0].shape == (2, 9, 9)
    for weights in maps:
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 9))
        assert torch.all(weights.triu(1) == 0)  # nothing attends to the future
    assert model.training  # mode restored


def test_attention_maps_match_the_fast_path():
    """The explicit weights give the same block output as scaled_dot_product_attention."""
    torch.manual_seed(0)
    model = TransformerLM(VOCAB, emsize=16, nhid=16, nhead=2).eval()
    attn = model.blocks[0].attn
    x = torch.randn(1, 6, 16)
    weights = attn.weights(x)
    _, _, v = attn._heads(x)
    manual = attn.proj((weights @ v).transpose(1, 2).reshape(1, 6, 16))
    torch.testing.assert_close(attn(x), manual, rtol=1e-4, atol=1e-5)


def test_lstm_state_carries_and_detaches():
    model = LSTMLM(VOCAB, emsize=16, nhid=16).eval()
    tokens = _tokens(2, 10)
    with torch.no_grad():
        whole, _ = model.step(tokens)
        first, state = model.step(tokens[:, :6])
        second, _ = model.step(tokens[:, 6:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)  # carrying the state = reading on
    assert model.carries_state and not TransformerLM(VOCAB, emsize=16, nhid=16).carries_state
    _, state = model.train().loss(tokens, tokens)
    assert state[0].requires_grad and not any(s.requires_grad for s in detach_state(state))


def test_build_language_model_checks_the_kind():
    assert isinstance(build_language_model("lstm", VOCAB, nhead=2, emsize=8, nhid=8), LSTMLM)
    with pytest.raises(ValueError, match="unknown language model"):
        build_language_model("gpt", VOCAB)


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_calling_the_model_with_targets_is_its_loss(kind):
    """`model(tokens, targets, state)` is `model.loss(...)`: the path a DistributedDataParallel wrapper sees."""
    torch.manual_seed(0)
    model = build_language_model(kind, VOCAB, emsize=16, nhid=16, adaptive_softmax=True).eval()
    tokens, targets = _tokens(), _tokens(seed=1)
    with torch.no_grad():
        loss, state = model(tokens, targets)
        expected, expected_state = model.loss(tokens, targets)
        torch.testing.assert_close(loss, expected)
        assert (state is None) == (kind == "transformer") == (expected_state is None)
        if state is not None:  # the carried state flows through the same call
            torch.testing.assert_close(model(tokens, targets, state)[0], model.loss(tokens, targets, state)[0])


@pytest.mark.parametrize("adaptive", [False, True])
def test_the_output_layer_trains_under_cpu_bf16_autocast(adaptive):
    """`--amp` on a CPU with native bf16 runs the model under autocast: the adaptive softmax (whose index_copy_
    mixes dtypes there) computes in float32, and the losses stay float32 and finite."""
    torch.manual_seed(0)
    layer = OutputLayer(32, 1000, adaptive=adaptive, cutoffs=[100, 500] if adaptive else None)
    hidden, targets = torch.randn(4, 5, 32, requires_grad=True), torch.randint(0, 1000, (4, 5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        nll, scores = layer.nll(hidden, targets), layer(hidden)
    nll.mean().backward()
    assert nll.dtype == torch.float32 and torch.isfinite(nll).all() and hidden.grad is not None
    assert scores.shape == (4, 5, 1000)
    plain = layer.nll(hidden, targets)
    assert torch.allclose(nll, plain, rtol=0.05, atol=0.05) if adaptive else torch.isfinite(plain).all()
