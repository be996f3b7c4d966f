"""How much does labkit's fit() cost over a bare PyTorch loop? (Lab 01's full-batch MLP)

Both sides train the same MLP (1-64-64-1, tanh) on the same 200 points with SGD, one
full-batch step per epoch, in this process, alternating so that machine noise hits both.
fit() additionally records the per-epoch loss in a History (one host sync per epoch), runs
its callbacks and checks for divergence; the bare loop records nothing. Both run as Lab 01 trains, in fp32
(no convolutions, so no memory format to choose); `--amp` puts both sides in bf16 autocast where the CPU runs
it natively (`labkit.device.amp_dtype`; `fit(amp=True)`, the bare loop under the same `torch.autocast`).
Against the limit, in the same run: the CPU's 2048x2048 matmul FLOP/s in fp32 and bf16 where native, the FLOPs
of one full-batch step counted by `FlopCounterMode`, and `peak_fraction` = fit's training FLOP/s ÷ the matmul
FLOP/s of its precision (tiny here: a 200x64 MLP is all overhead).

    python bench/engine_overhead.py            # 10,000 epochs, 7 alternating rounds, one thread (--threads)
    python bench/engine_overhead.py --quick    # 1,000 epochs, 3 rounds

Last line: `RESULT tooling_ratio=<median bare time / median fit time> ratio=<best fit time / best bare time>
peak_fraction=<x> precision=<fp32|bf16> matmul_fp32_gflops=<x> matmul_bf16_gflops=<x or na>`:
`tooling_ratio` has every bench's direction (> 1: labkit faster; here it can only approach 1 from below, the
same work plus fit's bookkeeping), `ratio` keeps its old meaning (labkit/bare, lower is better). The rounds
alternate which side runs first. Nothing is tuned: both sides run the same fixed settings.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/throughput.py

from throughput import matmul_flops, matmul_text, peak_fraction, precision_name, training_flops

from labkit.callbacks import Progress
from labkit.device import amp_dtype
from labkit.engine import fit
from labkit.labs.function_fitting import course_function, sample
from labkit.labs.function_fitting.model import MLP


def bare_loop(epochs: int, x: torch.Tensor, y: torch.Tensor, amp: bool = True) -> float:
    torch.manual_seed(0)
    model = MLP(1, (64, 64), 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.MSELoss()
    dtype = amp_dtype(torch.device("cpu"), amp)
    start = time.perf_counter()
    for _ in range(epochs):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    elapsed = time.perf_counter() - start
    assert torch.isfinite(loss)
    return elapsed


def labkit_fit(epochs: int, x: torch.Tensor, y: torch.Tensor, amp: bool = True) -> float:
    torch.manual_seed(0)
    model = MLP(1, (64, 64), 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    start = time.perf_counter()
    history = fit(model, [(x, y)], epochs=epochs, optimizer=optimizer, loss_fn=nn.MSELoss(), device="cpu",
                  amp=amp, callbacks=[Progress(False)])
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
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False,
                        help="both sides in bf16 autocast where the CPU runs it natively (default off: Lab 01 "
                             "trains in fp32)")
    parser.add_argument("--peak-seconds", type=float, default=None,
                        help="seconds of 2048x2048 matmuls per precision (default 1.5; 0.3 with --quick)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peaks = matmul_flops("cpu", args.peak_seconds if args.peak_seconds is not None else (0.3 if args.quick else 1.5))
    epochs, repeats = (1_000, 3) if args.quick else (args.epochs, max(3, args.repeats))
    x, y = sample(course_function, 200)
    labkit_fit(200, x, y, args.amp)  # warm-up both paths
    bare_loop(200, x, y, args.amp)
    bare, ours = [], []
    for i in range(repeats):  # alternate which side goes first, so a load that changes hits both alike
        sides = [(bare, bare_loop), (ours, labkit_fit)]
        for times, side in (sides if i % 2 == 0 else sides[::-1]):
            times.append(side(epochs, x, y, args.amp))
    b, f = min(bare), min(ours)
    mb, mf = statistics.median(bare), statistics.median(ours)
    print(f"{epochs:,} full-batch epochs of the Lab 01 MLP on CPU ({torch.get_num_threads()} threads), "
          f"{repeats} alternating rounds, {precision_name(amp_dtype(torch.device('cpu'), args.amp))} on both sides")
    print("| loop | seconds, min / median / max | µs/epoch (median) | time vs bare (median) |")
    print("|---|---:|---:|---:|")
    for name, times in (("bare PyTorch loop (reference)", bare), ("labkit fit()", ours)):
        print(f"| {name} | {min(times):.2f} / {statistics.median(times):.2f} / {max(times):.2f} | "
              f"{statistics.median(times) / epochs * 1e6:.0f} | {statistics.median(times) / mb:.3f} |")
    dtype = amp_dtype(torch.device("cpu"), args.amp)
    torch.manual_seed(0)
    flops = training_flops(MLP(1, (64, 64), 1), x, y, loss_fn=nn.MSELoss())  # one full-batch step
    fraction = peak_fraction(epochs / mf, flops, peaks, dtype)
    print(f"\nagainst the limit: {flops / 1e6:,.2f} MFLOPs per step (FlopCounterMode), 2048x2048 matmul "
          f"{matmul_text(peaks)} (GFLOP/s); fit's peak_fraction {fraction:.2e} of the {precision_name(dtype)} matmul")
    print(f"RESULT tooling_ratio={mb / mf:.3f} ratio={f / b:.3f} peak_fraction={fraction:.4g} "
          f"precision={precision_name(dtype)} {matmul_text(peaks)}")

if __name__ == "__main__":
    main()
