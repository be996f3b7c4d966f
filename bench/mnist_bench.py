"""Lab 03 bench: wall-clock time to 99.0 % MNIST test accuracy, labkit's default recipe vs PyTorch's MNIST example.

    python bench/mnist_bench.py            # real MNIST (../shared/datasets or $LABKIT_DATA)
    python bench/mnist_bench.py --quick    # a small, fast correctness run

The reference is built like pytorch/examples' mnist/main.py: its 2-conv `Net` (log-softmax +
NLL loss), Adadelta lr 1.0, StepLR(step 1, gamma 0.7), batches of 64 from a torchvision
DataLoader over `MNIST` with ToTensor + Normalize((0.1307,), (0.3081,)), trained on all 60,000
training images (shuffled; the example shuffles on CUDA only), test accuracy after every epoch.
labkit runs its lab default (FastConvNet, AdamW one-cycle, label smoothing, random shifts, on
tensor-resident loaders) through `labkit.runner.run` on its 50,000-image train split (the other
10,000 are the lab's validation set), test accuracy after every epoch (this bench measures time to
a test accuracy, as the example does; the lab itself chooses on validation and tests once). Both sides run in this
process, one after the other; each side's clock includes building its datasets and loaders.
The reference stops at the target or after `--ref-max-epochs`; labkit runs its full schedule
and the time at which it first reaches the target is recorded.

Also printed: training images/s of the course's MyConvNet fed by the tensor-resident loader vs by a
torchvision DataLoader. Last line: `RESULT ratio=<reference time / labkit time> acc=<labkit final %>`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from labkit import runner
from labkit.callbacks import Callback, FitState
from labkit.data import mnist as mnist_data
from labkit.device import describe_device, seed_everything
from labkit.experiments import mnist as lab
from labkit.models.mnist import MyConvNet
from labkit.throughput import TrainingTimer, loader_speed, markdown_table


class Net(nn.Module):
    """pytorch/examples mnist/main.py's model, verbatim in structure."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


@dataclass
class Outcome:
    """One side's run: per-epoch test accuracy and cumulative seconds, and when it hit the target."""

    name: str
    accuracies: list[float] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)
    target: float = 0.99

    @property
    def time_to_target(self) -> float | None:
        for acc, seconds in zip(self.accuracies, self.elapsed):
            if acc >= self.target:
                return seconds
        return None

    def record(self, accuracy: float, seconds: float) -> None:
        self.accuracies.append(accuracy)
        self.elapsed.append(seconds)
        print(f"  {self.name}: epoch {len(self.accuracies)} test {100 * accuracy:.2f} % at {seconds:.1f} s",
              flush=True)


def torchvision_datasets(root: Path, n_train: int | None, n_test: int | None):
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train = datasets.MNIST(str(root), train=True, download=False, transform=transform)
    test = datasets.MNIST(str(root), train=False, download=False, transform=transform)
    if n_train is not None:
        train = torch.utils.data.Subset(train, range(min(n_train, len(train))))
    if n_test is not None:
        test = torch.utils.data.Subset(test, range(min(n_test, len(test))))
    return train, test


def run_reference(root: Path, max_epochs: int, target: float, workers: int, n_train: int | None,
                  n_test: int | None) -> Outcome:
    """The official example's train()/test() loops, timed from dataset construction on."""
    outcome = Outcome("reference", target=target)
    seed_everything(1)  # the example's default seed
    start = time.perf_counter()
    train_set, test_set = torchvision_datasets(root, n_train, n_test)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=64, shuffle=True, num_workers=workers)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=1000, num_workers=workers)
    model = Net()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    for _ in range(max_epochs):
        model.train()
        for data, labels in train_loader:
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), labels)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for data, labels in test_loader:
                correct += model(data).argmax(dim=1).eq(labels).sum().item()
        scheduler.step()
        outcome.record(correct / len(test_set), time.perf_counter() - start)
        if outcome.accuracies[-1] >= target:
            break
    return outcome


class RecordTest(Callback):
    """Record test accuracy and wall-clock time after each epoch of `fit()`."""

    def __init__(self, outcome: Outcome, start: float) -> None:
        self.outcome = outcome
        self.start = start

    def on_epoch_end(self, state: FitState) -> None:
        self.outcome.record(state.history.last("test_accuracy"), time.perf_counter() - self.start)


def run_labkit(root: Path, target: float, epochs: int | None, n_train: int | None, n_test: int | None) -> Outcome:
    """The lab's default recipe (full size) through labkit's runner, timed from loading the data on."""
    outcome = Outcome("labkit", target=target)
    cfg = lab.LAB.config("full", epochs=epochs, data=str(root), device="cpu")  # the reference's device
    start = time.perf_counter()
    data = lab.lab_data(cfg, lab.read_mnist(cfg).head(train=n_train, test=n_test))
    runner.run(lab.LAB, cfg, data=data, epoch_splits=("test",), callbacks=[RecordTest(outcome, start)],
               progress=False, write_files=False, checkpoints=False)
    return outcome


def loader_throughput(root: Path, steps: int, batch_size: int, workers: int) -> dict[str, tuple[float, float]]:
    """{'resident' | 'dataloader': (loader-alone images/s, MyConvNet training images/s)}, same batch size.

    Both sides train the same MyConvNet, in PyTorch's default memory layout (as the engine does on a CPU).
    """
    cfg = lab.LAB.config("full", data=str(root))
    resident = lab.loader(lab.read_mnist(cfg), "train", batch_size, "cpu", shuffle=True, drop_last=True,
                          transform=lab.transform(cfg.max_shift), seed=cfg.seed)
    train_set, _ = torchvision_datasets(root, None, None)
    dataloader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=workers)
    speeds = {}
    for name, loader in (("resident", resident), ("dataloader", dataloader)):
        torch.manual_seed(0)
        model = MyConvNet()
        timer = TrainingTimer(model, torch.optim.Adam(model.parameters(), lr=1e-3), loader, warmup_steps=2)
        timer.run(steps)
        speeds[name] = (loader_speed(loader, 4 * steps).images_per_s, timer.speed.images_per_s)
    return speeds


def find_root(arg: Path | None, workdir: Path) -> tuple[Path, str]:
    if arg is not None:
        return arg, f"MNIST from {arg}"
    root = mnist_data.default_root()
    if mnist_data.idx_available(root):
        return root, f"real MNIST from {root}"
    mnist_data.write_synthetic_mnist(workdir, n_train=2400, n_test=600)
    return workdir, "synthetic MNIST (no real MNIST found: numbers are for correctness only)"


def fmt_time(seconds: float | None) -> str:
    return "not reached" if seconds is None else f"{seconds:.1f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 epoch each on 2,048 training and 1,000 test images, few throughput steps")
    parser.add_argument("--data", type=Path, default=None, help="torchvision MNIST root (holding MNIST/raw)")
    parser.add_argument("--target", type=float, default=0.99, help="test accuracy to reach (default 0.99)")
    parser.add_argument("--ref-max-epochs", type=int, default=5, help="reference epoch cap (default 5)")
    parser.add_argument("--ref-workers", type=int, default=0,
                        help="DataLoader workers for the reference (the example uses 0 on CPU)")
    parser.add_argument("--steps", type=int, default=None, help="batches per throughput measurement")
    parser.add_argument("--batch", type=int, default=256, help="batch size of the throughput measurement")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root, what = find_root(args.data, Path(tmp))
        n_train, n_test = (2048, 1000) if args.quick else (None, None)
        ref_epochs = 1 if args.quick else args.ref_max_epochs
        lab_epochs = 1 if args.quick else None
        steps = args.steps or (3 if args.quick else 30)
        print(f"data: {what}")
        print(f"device: {describe_device('cpu')}")
        print(f"target: {100 * args.target:.1f} % test accuracy" + (" (quick run: 1 epoch each)" if args.quick else ""))

        print("reference (pytorch/examples mnist: Net, Adadelta 1.0, StepLR 0.7, batch 64, DataLoader):", flush=True)
        reference = run_reference(root, ref_epochs, args.target, args.ref_workers, n_train, n_test)
        print("labkit (default recipe: FastConvNet, AdamW one-cycle, TensorLoader):", flush=True)
        ours = run_labkit(root, args.target, lab_epochs, n_train, n_test)
        print("throughput (MyConvNet training):", flush=True)
        speeds = loader_throughput(root, steps, args.batch, args.ref_workers)

    ref_t, lab_t = reference.time_to_target, ours.time_to_target
    if ref_t is not None and lab_t is not None:
        ratio, note = ref_t / lab_t, "time to target"
    elif lab_t is not None:
        ratio, note = reference.elapsed[-1] / lab_t, "lower bound: the reference did not reach the target"
    else:  # quick runs: compare the time per epoch instead
        ratio = (reference.elapsed[-1] / len(reference.elapsed)) / (ours.elapsed[-1] / len(ours.elapsed))
        note = "time per epoch (labkit did not reach the target)"
    print()
    rows = []
    for side in (reference, ours):
        at = next((a for a in side.accuracies if a >= args.target), None)
        rows.append((side.name, str(len(side.accuracies)), fmt_time(side.time_to_target),
                     "-" if at is None else f"{100 * at:.2f} %", f"{100 * side.accuracies[-1]:.2f} %"))
    print(markdown_table(("side", "epochs run", "time to target", "test acc at target", "final test acc"), rows))
    print(f"\nspeed-up: {ratio:.2f}x ({note})")
    print()
    (lab_feed, lab_train), (torch_feed, torch_train) = speeds["resident"], speeds["dataloader"]
    print(markdown_table((f"batch {args.batch}", "loader alone, images/s", "MyConvNet training, images/s"), [
        ("labkit TensorLoader (resident uint8, batched shift)", f"{lab_feed:.0f}", f"{lab_train:.0f}"),
        (f"torchvision DataLoader (ToTensor + Normalize, {args.ref_workers} workers)", f"{torch_feed:.0f}",
         f"{torch_train:.0f}"),
        ("ratio", f"{lab_feed / torch_feed:.1f}x", f"{lab_train / torch_train:.2f}x"),
    ]))
    print(f"RESULT ratio={ratio:.2f} acc={100 * ours.accuracies[-1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
