"""How much does labkit's fit() cost over a bare PyTorch loop? (Lab 01's full-batch MLP)

Both sides train the same MLP (1-64-64-1, tanh) on the same 200 points with SGD, one
full-batch step per epoch, in this process, alternating so that machine noise hits both.
fit() additionally records the per-epoch loss in a History (one host sync per epoch), runs
its callbacks and checks for divergence; the bare loop records nothing.

    python bench/engine_overhead.py            # 10,000 epochs, 7 alternating rounds, one thread (--threads)
    python bench/engine_overhead.py --quick    # 1,000 epochs, 3 rounds

Last line: `RESULT tooling_ratio=<median bare time / median fit time> ratio=<best fit time / best bare time>`:
`tooling_ratio` has every bench's direction (> 1: labkit faster; here it can only approach 1 from below, the
same work plus fit's bookkeeping), `ratio` keeps its old meaning (labkit/bare, lower is better). The rounds
alternate which side runs first. Nothing is tuned: both sides run the same fixed settings.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from labkit.callbacks import Progress
from labkit.engine import fit
from labkit.labs.function_fitting import course_function, sample
from labkit.labs.function_fitting.model import MLP


def bare_loop(epochs: int, x: torch.Tensor, y: torch.Tensor) -> float:
    torch.manual_seed(0)
    model = MLP(1, (64, 64), 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.MSELoss()
    start = time.perf_counter()
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    elapsed = time.perf_counter() - start
    assert torch.isfinite(loss)
    return elapsed


def labkit_fit(epochs: int, x: torch.Tensor, y: torch.Tensor) -> float:
    torch.manual_seed(0)
    model = MLP(1, (64, 64), 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    start = time.perf_counter()
    history = fit(model, [(x, y)], epochs=epochs, optimizer=optimizer, loss_fn=nn.MSELoss(), device="cpu",
                  callbacks=[Progress(False)])
    elapsed = time.perf_counter() - start
    assert len(history) == epochs and not history.diverged
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7, help="alternating rounds (at least 3)")
    parser.add_argument("--quick", action="store_true", help="1,000 epochs, one repeat")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both sides (default 1: this 200x64 MLP's best setting; on the 2-core "
                             "machine the bare loop took 409 us/epoch on one thread and 487 on two)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    epochs, repeats = (1_000, 3) if args.quick else (args.epochs, max(3, args.repeats))
    x, y = sample(course_function, 200)
    labkit_fit(200, x, y)  # warm-up both paths
    bare_loop(200, x, y)
    bare, ours = [], []
    for i in range(repeats):  # alternate which side goes first, so a load that changes hits both alike
        sides = [(bare, bare_loop), (ours, labkit_fit)]
        for times, side in (sides if i % 2 == 0 else sides[::-1]):
            times.append(side(epochs, x, y))
    b, f = min(bare), min(ours)
    mb, mf = statistics.median(bare), statistics.median(ours)
    print(f"{epochs:,} full-batch epochs of the Lab 01 MLP on CPU ({torch.get_num_threads()} threads), "
          f"{repeats} alternating rounds")
    print("| loop | seconds, min / median / max | µs/epoch (median) | time vs bare (median) |")
    print("|---|---:|---:|---:|")
    for name, times in (("bare PyTorch loop (reference)", bare), ("labkit fit()", ours)):
        print(f"| {name} | {min(times):.2f} / {statistics.median(times):.2f} / {max(times):.2f} | "
              f"{statistics.median(times) / epochs * 1e6:.0f} | {statistics.median(times) / mb:.3f} |")
    print(f"RESULT tooling_ratio={mb / mf:.3f} ratio={f / b:.3f}")

if __name__ == "__main__":
    main()
