"""Lab 04's own pieces: the every-layer table, resuming for more epochs, the ablation sets, the
TensorBoard mistakes and precision-recall curves, showing TensorBoard in a notebook, --sync-bn."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from labkit import distributed
from labkit.errors import LabkitError
from labkit.experiments import tiny_imagenet as lab
from labkit.models.resnet import build_model, resnet18
from labkit.tensorboard import show_tensorboard

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from labkit.data.tiny_imagenet import write_synthetic_tiny_imagenet

    return write_synthetic_tiny_imagenet(tmp_path_factory.mktemp("tiny04"), n_classes=6, n_train_per_class=12,
                                         n_val_per_class=5, seed=3)


@pytest.fixture(scope="module")
def cfg(root, tmp_path_factory):
    return lab.LAB.config("smoke", data=str(root), arch="resnet10", width=8, epochs=3, lr=0.05, batch_size=24,
                          at_epochs=(1, 2), device="cpu", out=str(tmp_path_factory.mktemp("tiny04_run")))


@pytest.fixture(scope="module")
def data(cfg, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABKIT_DATA", str(tmp_path_factory.mktemp("tiny04_cache")))
        yield lab.load_data(cfg)


@pytest.fixture(scope="module")
def run(cfg, data):
    return lab.train(cfg, data, progress=False)


def test_the_layer_table_lists_every_layer_for_a_64_pixel_input():
    model = resnet18(num_classes=200)
    table = lab.resnet_layer_table(model)
    names = [row.name for row in table.rows]
    assert names == [name for name, _ in model.named_modules() if name]  # every module, in order
    convs = [r for r in table.rows if r.type == "Conv2d"]
    assert len(convs) == 20  # stem + 16 in the blocks + 3 downsample 1x1 convolutions
    shapes = {r.name: r.output_shape for r in table.rows}
    assert shapes["conv1"] == (64, 32, 32) and shapes["maxpool"] == (64, 16, 16)
    assert shapes["layer1.0.conv1"] == (64, 16, 16) and shapes["layer2.0.conv1"] == (128, 8, 8)
    assert shapes["layer2.0.downsample.0"] == (128, 8, 8) and shapes["layer3.1.bn2"] == (256, 4, 4)
    assert shapes["layer4.1.conv2"] == (512, 2, 2) and shapes["avgpool"] == (512, 1, 1)
    assert shapes["fc"] == (200,)
    assert table.row("layer1.0.conv1").params == 64 * 64 * 9 and table.row("fc").params == 512 * 200 + 200
    assert table.total_params == 11_279_112
    small = lab.resnet_layer_table(build_model("resnet18-64"))
    assert small.row("layer4.1.conv2").output_shape == (512, 8, 8)
    with pytest.raises(LabkitError, match="image_size"):
        lab.resnet_layer_table(model, 0)


def test_resume_plan_trains_further_from_an_earlier_epoch(run, data, tmp_path):
    plan = lab.resume_plan(run)
    assert (plan.checkpoint.name, plan.done, plan.epochs, plan.more) == ("epoch_001.pt", 1, 3, 2)
    plan, resumed = lab.resume_further(run, data, tmp_path / "resumed", progress=False)
    assert resumed.history.epoch == [1, 2, 3]  # epoch 1 from the checkpoint, 2 and 3 trained again
    assert resumed.history["val_loss"] == pytest.approx(run.history["val_loss"], rel=1e-4, abs=1e-5)
    with pytest.raises(LabkitError, match="would bend it"):  # cosine: the length is fixed
        lab.resume_plan(run, extra=5)
    with pytest.raises(LabkitError, match="train nothing"):
        lab.resume_plan(run, extra=0)


def test_resume_plan_extends_a_step_schedule_past_its_end(cfg, data, tmp_path):
    short = lab.train(cfg.replace(schedule="step", epochs=2, at_epochs=(), out=str(tmp_path / "a")), data,
                      progress=False)
    plan, longer = lab.resume_further(short, data, tmp_path / "b", extra=2, progress=False)
    assert (plan.checkpoint.name, plan.done, plan.epochs) == ("last.pt", 2, 4)
    assert longer.history.epoch == [1, 2, 3, 4]
    assert longer.history["train_loss"][:2] == pytest.approx(short.history["train_loss"])


def test_ablation_sets_offer_the_depth_34_pair(cfg):
    pairs = lab.ABLATION_SETS["depth-pairs"]
    assert set(pairs) == {"ResNet-18", "plain-18", "ResNet-34", "plain-34"}
    plain34 = lab.ablation_config(cfg, pairs["plain-34"])
    assert plain34.arch == "resnet34" and plain34.residual is False
    assert lab.ablation_config(cfg, pairs["plain-18"]).arch == "resnet18"
    everything = lab.ABLATION_SETS["all"]
    assert set(lab.ABLATIONS) < set(everything) and "plain-34" in everything
    assert lab.LAB.config("laptop").ablations == "course"
    with pytest.raises(Exception, match="ablations"):
        lab.LAB.config("smoke", ablations="nonsense")


def test_mistakes_and_pr_curves_reach_tensorboard(run, data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    written = lab.write_tensorboard_extras(run, data, tmp_path / "tb", max_images=4, pr_classes=2)
    assert written["total"] == 30 and 0 <= written["mistakes"] <= 30
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0, "images": 0})
    events.Reload()
    tensors = set(events.Tags()["tensors"])
    pr = [t for t in tensors if t.startswith("pr/")]
    assert "pr/all classes" in pr and len(pr) == 3, tensors
    if written["mistakes"]:
        assert written["tags"]["val mistakes"] == min(4, written["mistakes"])
        assert events.Tags()["images"], "no images of mistakes"
    with pytest.raises(LabkitError, match="at least 1"):
        lab.write_tensorboard_extras(run, data, tmp_path / "x", max_images=0)


def test_show_tensorboard_is_skipped_headless(tmp_path, monkeypatch, capsys):
    assert show_tensorboard(tmp_path) is False  # not in a notebook
    assert "not in a notebook" in capsys.readouterr().out
    monkeypatch.setenv("LABKIT_HEADLESS", "1")
    assert show_tensorboard(tmp_path) is False
    assert "LABKIT_HEADLESS" in capsys.readouterr().out


def test_sync_bn_converts_batch_norm_and_refuses_the_cpu():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    converted = distributed.convert_sync_batchnorm(model, "cuda")  # converting needs no GPU, training does
    assert isinstance(converted[1], nn.SyncBatchNorm) and converted[1].weight is model[1].weight
    with pytest.raises(LabkitError, match="GPUs only"):
        distributed.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(4)), torch.device("cpu"))
    single = distributed.wrap_model(nn.Sequential(nn.BatchNorm2d(4)), "cpu", sync_batchnorm=True)
    assert isinstance(single[0], nn.BatchNorm2d), "one process: nothing to synchronise"
    assert lab.LAB.config("smoke", sync_bn=True).sync_bn is True


@pytest.mark.slow
def test_sync_bn_under_torchrun_on_cpu_is_a_clear_error(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), LABKIT_DEVICE="cpu", OMP_NUM_THREADS="1", LABKIT_PROGRESS="0")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "labkit",
               "run", "tiny-imagenet", "--smoke", "--epochs", "1", "--sync-bn", "--out", str(tmp_path / "o")]
    done = subprocess.run(command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "labkit: error: --sync-bn: PyTorch's SyncBatchNorm trains on GPUs only" in done.stderr + done.stdout


def test_reproduce_records_the_run_and_every_ablation_variant(tmp_path, monkeypatch):
    import json

    from labkit import results

    monkeypatch.setenv("LABKIT_RESULTS", str(tmp_path / "results"))
    path = results.reproduce("tiny-imagenet", "smoke")
    ref = json.loads(path.read_text())
    assert set(ref["runs"]) == {"default"} | {f"ablation: {name}" for name in lab.ABLATION_SETS["all"]}
    default = ref["runs"]["default"]
    assert 0 <= default["best_val_accuracy"] <= 1 and default["train_images_per_s"] > 0
    folder = path.parent
    assert (folder / "default" / "curves.png").is_file() and (folder / "ablation" / "curves_val_accuracy.png").is_file()
