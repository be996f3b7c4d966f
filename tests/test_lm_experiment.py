"""Lab 05 runs end to end: the runner, checkpoints, resume, TensorBoard graph, load_run, the CLI."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from labkit import cli, runner
from labkit.callbacks import Callback
from labkit.checkpoint import load_checkpoint, save_checkpoint
from labkit.errors import DataError, UsageError
from labkit.labs import lm as lab
from labkit.labs.lm.data import write_synthetic_wikitext
from labkit.optim import make_optimizer, make_scheduler

LAB = lab.LAB
CPU = SimpleNamespace(rank=0, world_size=1, device=torch.device("cpu"))


def _cfg(tmp_path, name, **overrides):
    return LAB.config("smoke", out=str(tmp_path / name), epochs=2, **overrides)


class _StopAfterFirstEpoch(Callback):
    def on_epoch_end(self, state):
        state.stop = True  # as if the run were interrupted here


def test_train_writes_perplexities_checkpoints_and_a_tensorboard_graph(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = runner.run(LAB, _cfg(tmp_path, "run"))
    h, vocab = run.history, lab.vocabulary(run)
    assert h.epoch == [1, 2] and "val_perplexity" in h and "train_perplexity" in h
    assert h["val_perplexity"][-1] < len(vocab) / 2  # learned far beyond uniform guessing
    assert run.final["test"]["perplexity"] < len(vocab) / 2
    assert {p.name for p in run.checkpoint_dir.iterdir()} >= {"last.pt", "best.pt"}
    ckpt = load_checkpoint(run.checkpoint_dir / "last.pt")
    assert ckpt.config["model_info"]["vocab"] == vocab.to_list() and ckpt.config["adaptive"] is True
    assert ckpt.config["lab"] == "lm" and ckpt.config["size"] == "smoke"
    scalars, found_graph = set(), False
    for events_file in (run.out_dir / "tensorboard").glob("events.out.tfevents.*"):
        events = EventAccumulator(str(events_file))
        events.Reload()
        scalars |= set(events.Tags()["scalars"])
        if events.Tags().get("graph"):
            graph = events.Graph()
            assert any("TransformerLM" in node.name for node in graph.node)
            found_graph = True
    assert found_graph
    assert {"perplexity/val", "perplexity/train", "perplexity/test"} <= scalars


def test_resume_continues_exactly(tmp_path):
    whole = runner.run(LAB, _cfg(tmp_path, "whole", tensorboard=False))
    cfg = _cfg(tmp_path, "parts", tensorboard=False)
    first = runner.run(LAB, cfg, callbacks=[_StopAfterFirstEpoch()])
    assert first.history.epoch == [1]
    resumed = runner.run(LAB, cfg, resume=first.checkpoint_dir / "last.pt")
    assert resumed.history.epoch == [1, 2]
    assert resumed.history["val_perplexity"] == pytest.approx(whole.history["val_perplexity"], rel=1e-5)
    assert resumed.history.lr == pytest.approx(whole.history.lr)
    for a, b in zip(resumed.model.state_dict().values(), whole.model.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_load_run_rebuilds_the_model_and_vocabulary_from_the_checkpoint_alone(tmp_path):
    run = runner.run(LAB, _cfg(tmp_path, "trained", tensorboard=False))
    again = runner.load_run(run.best_checkpoint)
    assert again.lab == "lm" and again.chosen_epoch == run.chosen_epoch
    assert lab.vocabulary(again).to_list() == lab.vocabulary(run).to_list()
    inputs, _ = next(iter(run.data.eval["test"]))
    run.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(again.model(inputs), run.model(inputs))
    assert again.config == run.config


def test_recipes_and_sizes_validate():
    modern, example = LAB.config("full"), LAB.config("full", "example")
    assert modern.recipe == "modern" and modern.optimizer == "adamw" and modern.schedule == "warmup_cosine"
    assert modern.warmup_steps == 50 and modern.decay_matrices_only and modern.weight_decay == 0.1
    assert (modern.train_split, modern.val_split, modern.test_split) == ("train", "valid", "test")
    assert modern.epochs == 6 and modern.batch_size == 32 and modern.dropout == 0.2 and modern.seed == 1111
    assert not example.adaptive and example.batch_size == 20 and example.grad_clip == 0.25 and example.lr == 5.0
    assert example.optimizer == "sgd" and example.momentum == 0 and example.schedule == "plateau"
    assert example.gamma == 0.25 and example.patience_lr == 0
    for recipe in LAB.recipes:
        laptop = LAB.config("laptop", recipe)
        assert (laptop.train_split, laptop.val_split, laptop.test_split) == ("valid", "valid", "test")
        assert laptop.emsize == 200 and laptop.epochs >= 3
    smoke = LAB.config("smoke")
    assert smoke.emsize == 64 and smoke.epochs == 3 and smoke.lr == 5e-3 and smoke.warmup_steps == 10
    assert LAB.config("smoke", "example").lr == 5.0  # smoke size keeps the example's Transformer lr
    assert LAB.config("full", val_split="none").val_split is None
    with pytest.raises(UsageError, match="--nhead 3 must divide --emsize 200"):
        LAB.config("full", nhead=3)
    with pytest.raises(UsageError, match="--no-adaptive"):
        LAB.config("full", tied=True)
    with pytest.raises(UsageError, match="--carry-state needs --model lstm"):
        LAB.config("full", carry_state=True)
    assert LAB.config("full", model="lstm", carry_state=True).carry_state
    with pytest.raises(UsageError, match="--test-split"):
        LAB.config("laptop", test_split="valid")


def test_example_recipe_uses_sgd_and_divides_lr_by_four_on_plateau():
    cfg = LAB.config("full", "example")
    model = lab.language_model(cfg, 50)
    optimizer = make_optimizer(cfg, model)
    scheduler, interval = make_scheduler(cfg, optimizer, steps_per_epoch=10)
    assert isinstance(optimizer, torch.optim.SGD) and interval == "epoch"
    assert optimizer.param_groups[0]["momentum"] == 0 and len(optimizer.param_groups) == 1
    scheduler.step(5.0)
    scheduler.step(5.0)  # no improvement, patience 0
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5.0 * 0.25)  # lr 5 divided by 4


def test_modern_recipe_decays_matrices_only_and_warms_up_then_decays():
    cfg = LAB.config("full", warmup_steps=4, epochs=1)
    model = lab.language_model(cfg, 50)
    optimizer = make_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.AdamW)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"]) and model.embedding.weight in [*plain["params"]]
    scheduler, interval = make_scheduler(cfg, optimizer, steps_per_epoch=12)
    assert interval == "step"
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"] / cfg.lr)
        optimizer.step()
        scheduler.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    after_warmup = lrs[3:]
    assert all(a >= b for a, b in itertools.pairwise(after_warmup)) and lrs[-1] < 0.05


def test_cli_smoke_run_writes_files_then_generate_and_resume(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli.main(["run", "lm", "--smoke", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test perplexity" in printed and "generated corpus" in printed
    for name in ("metrics.json", "curves.png", "sample.txt", "attention.png"):
        assert (out / name).stat().st_size > 0, name
    record = json.loads((out / "metrics.json").read_text())
    assert record["summary"]["test_perplexity"] < 30 and "generated" in record["data"]
    checkpoint = out / "checkpoints" / "best.pt"
    args = ["generate", str(checkpoint), "--words", "12", "--seed", "3", "--prompt", "the qwertyuiop"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert "not in the vocabulary" in first and "qwertyuiop" in first
    cli.main(args)
    assert capsys.readouterr().out == first  # same seed, same text
    assert len(first.splitlines()[-1].split()) >= 2
    # resuming the 3-epoch warm-up/cosine run for 4 epochs is refused with the fix, not a traceback
    assert cli.main(["run", "lm", "--epochs", "4", "--resume", str(out / "checkpoints" / "last.pt")]) == 1
    assert "--epochs 3" in capsys.readouterr().err


def test_cli_help_lists_the_config_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "lm", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help lines
    for flag in ("--emsize", "--nhead", "--bptt", "--eval-batch-size", "--val-split", "--val-fraction",
                 "--adaptive", "--cutoffs", "--carry-state", "--grad-clip", "--warmup-steps", "--recipe",
                 "--size", "--resume", "--download", "--data"):
        assert flag in text, flag
    assert "--label-smoothing" not in text and "--channels-last" not in text
    assert "laptop valid" in text  # the laptop size's training file is shown beside the default


def test_cli_bad_values_name_the_option(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "lm", "--batch-size", "0"])
    assert exit_.value.code == 2 and "--batch-size must be at least 1" in capsys.readouterr().err
    assert cli.main(["run", "lm", "--smoke", "--nhead", "3", "--out", str(tmp_path)]) == 2
    assert "--nhead 3 must divide --emsize 64" in capsys.readouterr().err


def test_data_folder_is_honoured_at_smoke_size(tmp_path, capsys):
    assert cli.main(["run", "lm", "--smoke", "--data", "/does/not/exist", "--out", str(tmp_path / "x")]) == 1
    assert "no WikiText files in /does/not/exist" in capsys.readouterr().err
    root = write_synthetic_wikitext(tmp_path / "mine", vocab_size=40, seed=7)
    data = LAB.load_data(LAB.config("smoke", data=str(root)), CPU)
    assert str(root) in data.description and "generated" not in data.description
    generated = LAB.load_data(LAB.config("smoke"), CPU)
    assert "generated" in generated.description and "wikitext-2-synthetic" in generated.description
    assert data.source.corpus.root == root and len(data.info["vocab"]) < len(generated.info["vocab"])


def test_training_on_valid_when_train_is_missing(tmp_path):
    """The shared layout (no train.txt): a clear error, and the explicit way to train on valid."""
    root = write_synthetic_wikitext(tmp_path / "wt")
    (root / "train.txt").unlink()
    with pytest.raises(DataError, match="--train-split valid"):
        runner.run(LAB, LAB.config("smoke", data=str(root), out=str(tmp_path / "a")))
    cfg = LAB.config("smoke", data=str(root), out=str(tmp_path / "b"), epochs=1, train_split="valid",
                     val_split="none", test_split="test", tensorboard=False)
    run = runner.run(LAB, cfg)
    assert "val_perplexity" not in run.history and run.final["test"]["perplexity"] > 1


def test_validation_held_out_from_the_end_of_the_training_file(tmp_path):
    root = write_synthetic_wikitext(tmp_path / "wt")
    cfg = LAB.config("smoke", data=str(root), train_split="valid", val_split="valid", test_split="test")
    data = LAB.load_data(cfg, CPU)
    streams, corpus = data.source.streams, data.source.corpus
    assert torch.equal(torch.cat([streams["train"], streams["val"]]), corpus["valid"])
    assert streams["val"].numel() == round(corpus["valid"].numel() * cfg.val_fraction)
    assert torch.equal(streams["test"], corpus["test"])
    assert data.split_names["val"].startswith("valid.txt, last 10%")
    assert "train on valid.txt, first 90%" in data.description and "not comparable" in data.description


def test_batches_are_sharded_by_rank_with_the_per_rank_batch():
    ids = torch.arange(1000)
    whole = lab.shard_batches(ids, 8, 7, CPU)
    shards = [lab.shard_batches(ids, 8, 7, SimpleNamespace(rank=r, world_size=2, device=None)) for r in (0, 1)]
    assert [s.batch_size for s in shards] == [4, 4] and [len(s) for s in shards] == [len(whole)] * 2
    for together, *parts in zip(whole, *shards):
        for i in (0, 1):  # inputs, targets
            assert torch.equal(together[i], torch.cat([p[i] for p in parts]))
    with pytest.raises(Exception, match="does not split evenly"):
        lab.shard_batches(ids, 9, 7, SimpleNamespace(rank=0, world_size=2, device=None))


def test_generate_refuses_a_checkpoint_of_another_lab(tmp_path, capsys):
    other = save_checkpoint(tmp_path / "mlp.pt", model=torch.nn.Linear(1, 1), epoch=1,
                            config={"lab": "function-fitting"})
    assert cli.main(["generate", str(other)]) == 1
    assert "written by `labkit run function-fitting`, not by `labkit run lm`" in capsys.readouterr().err
    bare = save_checkpoint(tmp_path / "bare.pt", model=torch.nn.Linear(1, 1), epoch=1, config={})
    assert cli.main(["generate", str(bare)]) == 1
    assert "not by `labkit run lm`" in capsys.readouterr().err
    assert cli.main(["generate", str(bare), "--temperature", "0"]) == 2


def test_smoke_writes_a_sample(tmp_path):
    result = runner.smoke_run(LAB, tmp_path / "smoke")  # the runner's default: one smoke run, then report
    assert result["test_perplexity"] < 30
    assert (tmp_path / "smoke" / "sample.txt").read_text().startswith("the")
    assert (tmp_path / "smoke" / "curves.png").stat().st_size > 0
    assert (tmp_path / "smoke" / "attention.png").stat().st_size > 0


def test_two_torchrun_processes_match_one_process(tmp_path):
    """2 gloo processes, each reading half the rows, train the same model as one process (no dropout)."""
    common = ["-m", "labkit", "run", "lm", "--smoke", "--dropout", "0", "--device", "cpu", "--no-tensorboard",
              "--epochs", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           *common, "--out", str(tmp_path / "ddp")], env=env, capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert cli.main(["run", "lm", *common[4:], "--out", str(tmp_path / "one")]) == 0
    ddp, one = (load_checkpoint(tmp_path / name / "checkpoints" / "last.pt") for name in ("ddp", "one"))
    assert ddp.history["val_perplexity"] == pytest.approx(one.history["val_perplexity"], rel=1e-4)
    # (not the weights one by one: AdamW turns float-rounding noise in zero gradients, e.g. of the key
    # biases, into full-size steps of either sign)
    assert ddp.history["train_perplexity"] == pytest.approx(one.history["train_perplexity"], rel=1e-4)
    ddp_test = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["summary"]["test_perplexity"]
    one_test = json.loads((tmp_path / "one" / "metrics.json").read_text())["summary"]["test_perplexity"]
    assert ddp_test == pytest.approx(one_test, rel=1e-4)
    assert done.stdout.count("sample (temperature 1)") == 1  # the report is rank 0's only


@pytest.mark.shared
def test_laptop_size_trains_on_the_shared_copy(shared_datasets, tmp_path):
    """The shared copy (valid.txt, test.txt): train on valid.txt but its last 10%, validate there, test on test.txt."""
    if not (shared_datasets / "wikitext-2" / "valid.txt").is_file():
        pytest.skip("no WikiText-2 in the shared datasets")
    cfg = LAB.config("laptop", out=str(tmp_path / "laptop"), epochs=1, max_train_tokens=4000, emsize=16, nhid=16,
                     tensorboard=False)
    run = runner.run(LAB, cfg)
    data = run.data
    assert str(shared_datasets / "wikitext-2") in data.description and "not comparable" in data.description
    assert data.split_names["train"] == "valid.txt, first 90%, cut to its first 4,000 tokens"
    assert data.source.streams["val"].numel() == round(217_646 * 0.1)
    assert data.source.streams["test"].numel() == 245_569 and len(lab.vocabulary(run)) == 18_328
    assert "val_perplexity" in run.history and run.final["test"]["perplexity"] < len(lab.vocabulary(run))


def test_cli_size_and_recipe_options_reach_the_config(tmp_path, capsys):
    """`--size laptop --recipe example` builds that config (the data folder is then checked first)."""
    assert cli.main(["run", "lm", "--size", "laptop", "--recipe", "example", "--data", str(tmp_path),
                     "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"no WikiText files in {tmp_path}" in err
    lab_parser = cli.lab_parser(LAB)
    cfg = cli.config_from_args(LAB, lab_parser.parse_args(["--size", "laptop", "--recipe", "example"]))
    assert (cfg.size, cfg.recipe, cfg.train_split, cfg.optimizer) == ("laptop", "example", "valid", "sgd")
    full = cli.config_from_args(LAB, lab_parser.parse_args(["--size", "full", "--val-split", "none"]))
    assert full.size == "full" and full.val_split is None and full.train_split == "train"
