"""Check a student's one-epoch training loop, `train_one_epoch(model, loader, optimizer, loss_fn, writer=None,
epoch=1) -> (mean loss, accuracy)` logging each batch's loss at step `(epoch - 1) * len(loader) + i`: run on a
tiny model, three unequal batches, momentum SGD, starting in eval mode, against `labkit.engine.fit`; each bug
the course reports contain gets its own message.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from labkit.check import CheckFailed, passed

TrainFn = Callable[..., Any]
BATCH_SIZES = (8, 8, 3)
LR, MOMENTUM = 0.1, 0.9


class _Probe(nn.Module):
    """A tiny classifier that records whether each forward pass ran in training mode."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 7))
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return self.net(x)


class _Writer:
    """Stands in for a SummaryWriter: records (tag, value, step) of every add_scalar."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, int | None]] = []

    def add_scalar(self, tag: str, value: Any, global_step: int | None = None, *args: Any, **kwargs: Any) -> None:
        self.calls.append((tag, float(value), None if global_step is None else int(global_step)))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _problem(seed: int = 0) -> tuple[_Probe, list[tuple[torch.Tensor, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = _Probe()
    batches = []
    for n in BATCH_SIZES:
        x = torch.randn(n, 6, generator=gen)
        y = torch.randint(0, 7, (n,), generator=gen)
        batches.append((x, y))
    return model, batches


def _params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _sgd(model: nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)


def _reference(model: _Probe, batches: list) -> tuple[torch.Tensor, float, float, list[float], list[float]]:
    """labkit's loop for one epoch: (weights after, mean loss, accuracy, batch losses, batch top-5)."""
    from labkit.callbacks import Progress
    from labkit.engine import fit

    ref = copy.deepcopy(model)
    history = fit(ref, batches, epochs=1, optimizer=_sgd(ref), loss_fn=nn.CrossEntropyLoss(),
                  metrics=("accuracy",), device="cpu", callbacks=[Progress(False)])
    # the per-batch losses and top-5 of the same trajectory, for the diagnoses below
    again = copy.deepcopy(model)
    opt = _sgd(again)
    losses, top5 = [], []
    for x, y in batches:
        opt.zero_grad()
        out = again(x)
        loss = nn.functional.cross_entropy(out, y)
        losses.append(loss.item())
        top5.append((out.topk(5, dim=1).indices == y[:, None]).any(dim=1).float().sum().item())
        loss.backward()
        opt.step()
    return _params(ref), history.last("train_loss"), history.last("train_accuracy"), losses, top5


def _without_zero_grad(model: _Probe, batches: list) -> torch.Tensor:
    """The weights a loop that never calls zero_grad() ends with (gradients pile up)."""
    bug = copy.deepcopy(model)
    opt = _sgd(bug)
    opt.zero_grad()
    for x, y in batches:
        nn.functional.cross_entropy(bug(x), y).backward()
        opt.step()
    return _params(bug)


def _number(value: Any, what: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise CheckFailed(f"{what} is a tensor of shape {tuple(value.shape)}; return one number "
                              "(e.g. total / count, or .item() of a 0-d tensor).")
        value = value.item()
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise CheckFailed(f"{what} should be a finite number, got {value!r}.")
    return float(value)


def check_train_one_epoch(train_one_epoch: TrainFn, epoch: int = 3) -> None:
    """Run the student's `train_one_epoch` once and explain the first thing that is wrong."""
    model, batches = _problem()
    ref_weights, ref_loss, ref_acc, batch_losses, batch_top5 = _reference(model, batches)
    student = copy.deepcopy(model)
    student.eval()  # as after an evaluation pass: the epoch must switch back to training mode
    optimizer = _sgd(student)
    writer = _Writer()
    before = _params(student)
    result = train_one_epoch(student, batches, optimizer, nn.CrossEntropyLoss(), writer=writer, epoch=epoch)

    if result is None:
        raise CheckFailed("train_one_epoch returned None: did it forget to `return mean_loss, accuracy`?")
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CheckFailed(f"train_one_epoch should return two numbers (mean loss, accuracy), got {result!r}.")
    loss, acc = _number(result[0], "the mean loss"), _number(result[1], "the accuracy")
    after = _params(student)

    if student.modes and not any(student.modes):
        raise CheckFailed("The model ran in eval mode during training: call model.train() at the start of each "
                          "epoch. After an evaluation pass (model.eval()) the model stays in eval mode, with "
                          "dropout off and BatchNorm using its running statistics instead of learning.")
    if len(student.modes) != len(batches):
        raise CheckFailed(f"The model saw {len(student.modes)} forward passes for {len(batches)} batches: the loop "
                          "should run the model once on every batch of the loader (no early break).")
    if torch.equal(after, before):
        raise CheckFailed("The weights did not change: call loss.backward() and then optimizer.step() for each "
                          "batch.")
    if not optimizer.state:
        raise CheckFailed(
            "The optimizer you were given never took a step, yet the weights changed: a new optimizer is "
            "created inside the function. Create the optimizer once, before the epoch loop, and pass it in. "
            "A new optimizer has its own settings and an empty state: in the course's CIFAR report "
            "`optim.SGD(model.parameters(), lr=lr, weight_decay=5e-4)` inside the loop trained at lr 0.01 from "
            "epoch 2 on instead of the 0.1 → 0.01 schedule, and with no momentum at all.")
    if not torch.allclose(after, ref_weights, atol=1e-5):
        if torch.allclose(after, _without_zero_grad(model, batches), atol=1e-5):
            raise CheckFailed("The gradients pile up from batch to batch: call optimizer.zero_grad() before "
                              "loss.backward() in every step (PyTorch adds new gradients to the old ones).")
        raise CheckFailed("After the epoch the weights differ from labkit's one-epoch loop: each batch should do "
                          "zero_grad, forward, loss, backward, step, in that order, with the optimizer given.")

    if math.isclose(loss, batch_losses[-1], rel_tol=1e-4) and not math.isclose(loss, ref_loss, rel_tol=1e-4):
        raise CheckFailed(f"The mean loss {loss:.4f} is the LAST batch's loss: add up loss.item() * batch_size "
                          f"over all batches and divide by the number of examples (expected {ref_loss:.4f}).")
    unweighted = sum(batch_losses) / len(batch_losses)
    if math.isclose(loss, unweighted, rel_tol=1e-4) and not math.isclose(loss, ref_loss, rel_tol=1e-4):
        raise CheckFailed(f"The mean loss {loss:.4f} averages the batch losses, but the last batch is smaller "
                          f"({BATCH_SIZES}): weight each batch by its size (expected {ref_loss:.4f}).")
    if not math.isclose(loss, ref_loss, rel_tol=1e-4):
        raise CheckFailed(f"The mean loss is {loss:.4f}, expected {ref_loss:.4f}: the mean over every example of "
                          "the epoch (each batch's loss.item() times its size, summed, over the count).")

    n = sum(BATCH_SIZES)
    top5 = sum(batch_top5) / n
    if math.isclose(acc, top5, rel_tol=1e-6) and not math.isclose(acc, ref_acc, rel_tol=1e-6):
        raise CheckFailed(f"The accuracy {acc:.3f} is the TOP-5 accuracy (the label among the 5 highest scores). "
                          "Accuracy is top-1: outputs.argmax(dim=1) == labels. Report top-5 separately, named "
                          f"so (expected accuracy {ref_acc:.3f}).")
    if math.isclose(acc, 100 * ref_acc, rel_tol=1e-6) and ref_acc > 0:
        raise CheckFailed(f"The accuracy is {acc:.1f}: return a fraction in [0, 1] ({ref_acc:.3f}), not percent.")
    if not math.isclose(acc, ref_acc, rel_tol=1e-6):
        raise CheckFailed(f"The accuracy is {acc:.4f}, expected {ref_acc:.4f}: count outputs.argmax(dim=1) == "
                          "labels over every example of the epoch and divide by their number. (Compute it "
                          "from the outputs of the forward pass, before optimizer.step().)")

    _check_logged_steps(writer, epoch, len(batches))
    passed(f"train_one_epoch: weights, mean loss {loss:.4f}, accuracy {acc:.3f} and TensorBoard steps match "
           "labkit's loop")


def _check_logged_steps(writer: _Writer, epoch: int, n_batches: int) -> None:
    if not writer.calls:
        raise CheckFailed("Nothing was logged: log each batch's loss with writer.add_scalar('loss/train', "
                          "loss.item(), global_step) when a writer is given.")
    expected = [(epoch - 1) * n_batches + i for i in range(n_batches)]
    by_tag: dict[str, list[int | None]] = {}
    for tag, _, step in writer.calls:
        by_tag.setdefault(tag, []).append(step)
    if any(steps == expected for steps in by_tag.values()):
        # the per-batch curve is right; an extra per-epoch chart is fine, unless its step is the batch index
        # `i` the loop left behind (the reverse mistake: every epoch's value lands on the same step)
        for tag, tag_steps in by_tag.items():
            if tag_steps == [n_batches - 1] and epoch != n_batches - 1 and n_batches > 1:
                raise CheckFailed(f"The per-epoch value '{tag}' was logged at step {n_batches - 1}, the batch "
                                  "index i that the loop left behind: a per-BATCH step for a per-epoch value, so "
                                  "every epoch lands on the same step and overwrites the last. Log an epoch's "
                                  f"value at step epoch (here {epoch}).")
        return
    steps = max(by_tag.values(), key=len)
    if None in steps:
        raise CheckFailed("add_scalar was called without a step: pass global_step, or TensorBoard draws every "
                          "point at step 0.")
    if len(steps) == n_batches and len(set(steps)) == 1:
        raise CheckFailed(f"Every batch was logged at the same step ({steps[0]}): that is a per-EPOCH step, so "
                          "TensorBoard overwrites the batch points. For per-batch curves use the global step "
                          f"(epoch - 1) * len(loader) + i, here {expected}.")
    if steps == list(range(n_batches)) and epoch > 1:
        raise CheckFailed(f"The steps {steps} restart at 0 every epoch, so epochs draw over each other: use the "
                          f"global step (epoch - 1) * len(loader) + i, here {expected}.")
    if len(steps) == 1:
        raise CheckFailed(f"One value was logged for {n_batches} batches: log every batch's loss at its global "
                          f"step {expected} (and the epoch's mean at step {epoch} in a separate chart, if you "
                          "like).")
    raise CheckFailed(f"Logged at steps {steps}; expected one per batch at the global steps {expected}.")
