"""The ablation runner at smoke size: real training per variant, table, CSV and curves."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn

from labkit.callbacks import Progress
from labkit.engine import fit
from labkit.history import History
from labkit.labs.tiny_imagenet.ablation import AblationResult, run_ablation

EPOCHS = 4


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (96,), generator=g)
    x = torch.randn(3, 5, generator=g)[y] * 2 + torch.randn(96, 5, generator=g)
    return [(x[:64], y[:64])], [(x[64:], y[64:])]


def train_variant(name: str, settings: dict) -> History:
    """A tiny classifier; `hidden=0` drops the hidden layer, `lr` sets the step size."""
    torch.manual_seed(0)
    hidden = settings.get("hidden", 16)
    layers = [nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, 3)] if hidden else [nn.Linear(5, 3)]
    model = nn.Sequential(*layers)
    train, val = _data()
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.get("lr", 0.5))
    return fit(model, train, epochs=EPOCHS, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(),
               eval_data=val, metrics=("accuracy",), device="cpu", callbacks=[Progress(False)])  # fmt: skip


@pytest.fixture(scope="module")
def result() -> AblationResult:
    variants = {"baseline": {}, "linear": {"hidden": 0}, "tiny lr": {"lr": 1e-6}}
    return run_ablation(variants, train_variant, verbose=False)


def test_every_variant_is_trained_and_timed(result):
    assert list(result.histories) == ["baseline", "linear", "tiny lr"]
    assert all(len(h) == EPOCHS for h in result.histories.values())
    assert all(s > 0 for s in result.seconds.values())
    rows = {row["variant"]: row for row in result.rows()}
    assert rows["linear"]["settings"] == "hidden=0" and rows["baseline"]["settings"] == "-"
    base = result.histories["baseline"]
    assert rows["baseline"]["final_val_accuracy"] == base.last("val_accuracy")
    assert rows["baseline"]["best_val_accuracy"] == max(base["val_accuracy"])
    assert rows["baseline"]["final_train_accuracy"] == base.last("train_accuracy")


def test_the_table_ranks_a_learning_variant_above_a_frozen_one(result):
    rows = {row["variant"]: row for row in result.rows()}
    assert rows["baseline"]["best_val_accuracy"] > 0.8
    assert rows["tiny lr"]["best_val_accuracy"] < rows["baseline"]["best_val_accuracy"]
    assert result.best_variant() in ("baseline", "linear")


def test_markdown_and_csv_tables(result, tmp_path):
    table = result.to_markdown().splitlines()
    assert table[0].startswith("| variant | settings | final_val_accuracy | best_val_accuracy")
    assert len(table) == 2 + 3
    assert "%" in table[2]  # accuracies shown as percentages
    with result.to_csv(tmp_path / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["variant"] for r in rows] == ["baseline", "linear", "tiny lr"]
    baseline = result.histories["baseline"].last("val_accuracy")
    assert math.isclose(float(rows[0]["final_val_accuracy"]), baseline)


def test_save_writes_tables_and_overlaid_curves(result, tmp_path):
    written = result.save(tmp_path / "ablation")
    assert set(written) == {"markdown", "csv", "val_accuracy", "train_accuracy"}
    for path in written.values():
        assert path.is_file() and path.stat().st_size > 0
    assert written["val_accuracy"].read_bytes()[:4] == b"\x89PNG"
    figure = result.plot("val_loss")
    assert len(figure.axes[0].lines) == 3
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == list(result.histories)
    with pytest.raises(KeyError, match="no variant recorded 'val_top5'"):
        result.plot("val_top5")


def test_out_dir_and_lower_is_better_metrics(tmp_path):
    result = run_ablation({"a": {}, "b": {"lr": 1e-6}}, train_variant, metric="loss",
                          out_dir=tmp_path, verbose=False)  # fmt: skip
    assert (tmp_path / "results.md").is_file() and (tmp_path / "curves_val_loss.png").is_file()
    assert result.best_variant() == "a"  # the lower loss wins
    assert "%" not in result.to_markdown()


def test_bad_variants_and_bad_runners_are_named():
    with pytest.raises(ValueError, match="no variants"):
        run_ablation({}, train_variant)
    with pytest.raises(TypeError, match="variant 'x': settings must be a dict"):
        run_ablation({"x": 3}, train_variant)  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="must return the History"):
        run_ablation({"x": {}}, lambda name, settings: {"val_accuracy": [1.0]}, verbose=False)

    def broken(name, settings):
        raise ValueError("lr must be positive")

    with pytest.raises(RuntimeError, match=r"variant 'neg' \(lr=-1\) failed: lr must be positive"):
        run_ablation({"neg": {"lr": -1}}, broken, verbose=False)
