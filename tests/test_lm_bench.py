"""bench/lm_bench.py: the reference is built like the example and both trainers respect the budget."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from labkit.labs import lm as lab
from tests.bench_result import check_limit_keys

_PATH = Path(__file__).resolve().parent.parent / "bench" / "lm_bench.py"


def _bench():
    spec = importlib.util.spec_from_file_location("lm_bench", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("lm_bench", module)
    spec.loader.exec_module(module)
    return module


def test_reference_is_the_examples_transformer_and_causal():
    bench = _bench()
    torch.manual_seed(0)
    model = bench.ReferenceTransformer(100).eval()
    # nn.Transformer's 2-layer encoder with final norm, embedding, Linear decoder: 524,500 weights
    assert sum(p.numel() for p in model.parameters()) == 524_500
    assert model.encoder.layers[0].dropout.p == 0.1 and model.pos_encoder.dropout.p == 0.2
    tokens = torch.randint(0, 100, (12, 3))  # (time, batch): sequence-first like the example
    changed = tokens.clone()
    changed[8] = (changed[8] + 1) % 100
    with torch.no_grad():
        out, out2 = model(tokens), model(changed)
    assert out.shape == (12, 3, 100)
    torch.testing.assert_close(out[:8], out2[:8])
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(12, 3))


def test_both_trainers_stop_at_the_budget():
    bench = _bench()
    ids = torch.randint(0, 50, (20_000,))
    ref = bench.train_reference(ids, 50, budget=0.5, seed=0)
    assert ref["batches"] >= 1 and ref["tokens"] == ref["batches"] * 20 * 35
    assert ref["seconds"] < 0.5 + 2.0
    cfg = lab.LAB.config("full", "modern", emsize=16, nhid=16, batch_size=8, warmup_steps=2)
    ours = bench.train_labkit(ids, 50, 0.5, cfg)
    assert ours["batches"] >= 1 and ours["seconds"] < 0.5 + 2.0
    assert ours["tokens"] > 0 and ours["history"].epoch[-1] >= 1
    ppl = bench.evaluate_reference(ref["model"], ids[:2000], 50)
    assert 1 < ppl < 1e6


def test_tooling_times_the_same_model_and_recipe_on_both_sides():
    bench = _bench()
    ids = torch.randint(0, 40, (8_000,))
    speeds = bench.tooling(ids, 40, batches=4, rounds=2, seed=0)
    assert set(speeds) == {"reference loop", "labkit fit"}
    assert all(len(v) == 2 and all(s > 0 for s in v) for v in speeds.values())


def test_windows_continue_where_the_last_chunk_stopped():
    bench = _bench()
    source = bench.example_batchify(torch.arange(2_000), 20)
    windows = bench.Windows(source, bptt=35)
    first, second = windows.take(2), windows.take(1)
    expected = list(bench.example_batches(source, 35))[:3]
    for (x, y), (ex, ey) in zip(first + second, expected):
        assert torch.equal(x, ex) and torch.equal(y, ey)


def test_choosing_never_sees_the_test_text():
    """The hold-out is the end of valid.txt: train and hold-out are disjoint and cover it."""
    bench = _bench()
    ids = torch.arange(1_000)
    train, holdout = bench.split_valid(ids)
    assert train.numel() == 900 and holdout.numel() == 100 and torch.equal(torch.cat([train, holdout]), ids)


def test_quick_run_reports_the_limit(capsys):
    bench = _bench()
    assert bench.main(["--quick", "--peak-seconds", "0.1", "--seeds", "1", "--budget", "0.5",
                       "--tooling-batches", "4"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = check_limit_keys(last)
    assert list(result)[:5] == ["tooling_ratio", "recipe_ratio", "ppl", "ref_ppl", "tps_ratio"]
