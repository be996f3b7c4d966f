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
from labkit.labs import tiny_imagenet as lab
from labkit.labs.tiny_imagenet import show_tensorboard
from labkit.labs.tiny_imagenet.model import build_model, resnet18

REPO = Path(__file__).resolve().parent.parent


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
    for name in lab.ABLATION_SETS["all"]:  # a ranking stands on three seeds: their min <= median <= max
        row = ref["runs"][f"ablation: {name}"]
        assert row["best_val_accuracy_min"] <= row["best_val_accuracy_median"] <= row["best_val_accuracy_max"]
        assert row["best_val_accuracy_min"] <= round(row["best_val_accuracy"], 4) <= row["best_val_accuracy_max"]
