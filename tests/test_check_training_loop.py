"""The loop-writing exercise's check: the right loop passes, and each bug of the course reports gets
its own hint (one test per bug feeds a buggy loop)."""

from __future__ import annotations

import pytest
import torch

from labkit.check import CheckFailed
from labkit.labs.cifar10.training_loop import check_train_one_epoch


def loop(*, zero_grad=True, train_mode=True, new_optimizer=False, report="weighted", accuracy="top1",
         step="global", log=True, ret=True, epoch_step=None):
    """A one-epoch loop with one bug switched on."""

    def train_one_epoch(model, loader, optimizer, loss_fn, writer=None, epoch=1):
        if new_optimizer:
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        if train_mode:
            model.train()
        total, correct, seen, last = 0.0, 0.0, 0, 0.0
        batch_losses = []
        for i, (x, y) in enumerate(loader):
            if zero_grad:
                optimizer.zero_grad()
            out = model(x)
            loss = loss_fn(out, y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            batch_losses.append(loss.item())
            last = loss.item()
            if accuracy == "top1":
                correct += (out.argmax(1) == y).sum().item()
            else:
                correct += (out.topk(5, dim=1).indices == y[:, None]).any(1).sum().item()
            seen += len(y)
            if writer is not None and log:
                at = {"global": (epoch - 1) * len(loader) + i, "epoch": epoch, "batch": i}[step]
                writer.add_scalar("loss/train", loss.item(), at)
        if writer is not None and epoch_step is not None:  # a per-epoch chart as well
            writer.add_scalar("loss/train_epoch", total / seen, {"epoch": epoch, "batch": i}[epoch_step])
        mean = {"weighted": total / seen, "last": last, "unweighted": sum(batch_losses) / len(batch_losses)}[report]
        return (mean, correct / seen) if ret else None

    return train_one_epoch


def test_the_right_loop_passes(capsys):
    check_train_one_epoch(loop())
    assert "✔" in capsys.readouterr().out


def test_a_per_epoch_chart_at_the_epoch_step_passes(capsys):
    check_train_one_epoch(loop(epoch_step="epoch"))
    assert "✔" in capsys.readouterr().out


@pytest.mark.parametrize(("bug", "needle"), [
    ({"new_optimizer": True}, "created inside the function"),
    ({"zero_grad": False}, "zero_grad"),
    ({"report": "last"}, "LAST batch"),
    ({"report": "unweighted"}, "weight each batch by its size"),
    ({"accuracy": "top5"}, "TOP-5"),
    ({"train_mode": False}, "model.train()"),
    ({"step": "epoch"}, "per-EPOCH step"),
    ({"step": "batch"}, "restart at 0 every epoch"),
    ({"epoch_step": "batch"}, "per-BATCH step for a per-epoch value"),
    ({"log": False}, "Nothing was logged"),
    ({"ret": False}, "returned None"),
])
def test_each_course_bug_gets_its_hint(bug, needle):
    with pytest.raises(CheckFailed, match=needle.replace("(", r"\(").replace(")", r"\)")):
        check_train_one_epoch(loop(**bug))
