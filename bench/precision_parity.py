"""Does bf16 mixed precision cost Lab 02 accuracy? The course recipe at a size, fp32 against bf16 autocast (both
channels_last), several seeds each: hold-out (or test) accuracy min / median / max per precision.

bf16 is labkit's default on a CPU with native bf16 only if the medians differ by less than the seed spread
(issue 21). Accuracy does not depend on the machine's load, so the runs may share the CPU: `--jobs 2` runs two
at once with one thread each (the two cores of a laptop give about the same total throughput either way).
Where the CPU has no native bf16, `LABKIT_CPU_BF16=1` measures bf16's accuracy with oneDNN's emulated bf16 (about
twice fp32's time here); every run records its CPU and whether its bf16 was native (`parity-run.json` beside it).

    python bench/precision_parity.py --size laptop --seeds 0 1 2 --jobs 2 --out /tmp/parity
    python bench/precision_parity.py --size smoke --seeds 0 1 --out /tmp/parity   # seconds: the pipeline only

Ends with `RESULT fp32_median=… bf16_median=… fp32_spread=… bf16_spread=… median_gap=… bf16_within_noise=…
complete=yes|no` (`--available` tabulates the finished runs only: complete=no until every seed ran).
An accuracy study, not a speed bench: no `peak_fraction` or `tooling_ratio` (the speed benches report those);
its runs' wall times are in the JSON for orientation only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from labkit.device import cpu_bf16_native, cpu_name

PRECISIONS = {"fp32": "--no-amp", "bf16": "--amp"}


def bf16_hardware() -> bool:
    """Whether this CPU runs bf16 natively, whatever LABKIT_CPU_BF16 forces."""
    forced = os.environ.pop("LABKIT_CPU_BF16", None)
    try:
        return cpu_bf16_native()
    finally:
        if forced is not None:
            os.environ["LABKIT_CPU_BF16"] = forced


def one_run(size: str, precision: str, seed: int, out: Path, threads: int, extra: list[str]) -> dict:
    folder = out / f"{precision}-seed{seed}"
    metrics, where = folder / "metrics.json", folder / "parity-run.json"
    if not metrics.exists():  # a finished run is read again, not retrained (the sweep can be resumed)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, "-m", "labkit", "run", "cifar10", "--size", size, "--recipe", "course",
               "--seed", str(seed), PRECISIONS[precision], "--channels-last", "--no-tensorboard", "--overwrite",
               "--out", str(folder), *extra]
        log = folder.with_suffix(".log")
        folder.mkdir(parents=True, exist_ok=True)
        # written before the run (the run's --overwrite keeps it), so a sweep stopped once the metrics exist keeps it
        bf16 = "native" if bf16_hardware() else "emulated (LABKIT_CPU_BF16=1)"
        where.write_text(json.dumps({"cpu": cpu_name(), "threads": threads,
                                     "bf16": bf16 if precision == "bf16" else "not used"}, indent=2) + "\n")
        with open(log, "w") as handle:
            done = subprocess.run(cmd, check=False, stdout=handle, stderr=subprocess.STDOUT, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{precision} seed {seed} failed ({done.returncode}); see {log}")
    summary = json.loads(metrics.read_text())["summary"]
    run = json.loads(where.read_text()) if where.exists() else {"cpu": "not recorded", "bf16": "not recorded"}
    return {"precision": precision, "seed": seed, "accuracy": summary["test_accuracy"],
            "train_accuracy": summary["train_accuracy"], "seconds": summary["seconds"], **run}


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "spread": max(values) - min(values)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="laptop", choices=("smoke", "laptop", "full"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (each gets cores/jobs threads)")
    parser.add_argument("--out", type=Path, default=Path("runs/precision-parity"))
    parser.add_argument("--json", type=Path, help="write the table here as JSON")
    parser.add_argument("--available", action="store_true",
                        help="tabulate the runs already finished under --out and train nothing (a partial table)")
    parser.add_argument("extra", nargs="*", help="more `labkit run` options, after --")
    args = parser.parse_args(argv)
    if not args.available and not cpu_bf16_native() and not torch.cuda.is_available():
        raise SystemExit("This CPU has no native bf16 (AVX-512 BF16 or AMX): labkit trains it in fp32 whatever "
                         "--amp says, so there is no bf16 side to compare. Run this where bf16 is native, or with "
                         "LABKIT_CPU_BF16=1 to measure bf16's accuracy (not its speed) with emulated bf16.")
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    plan = [(p, s) for s in args.seeds for p in PRECISIONS]  # precisions alternate
    if args.available:
        plan = [(p, s) for p, s in plan if (args.out / f"{p}-seed{s}" / "metrics.json").exists()]
        if {p for p, _ in plan} != set(PRECISIONS):
            raise SystemExit(f"--available: no finished run of each precision under {args.out}")
    started = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda job: one_run(args.size, job[0], job[1], args.out, threads, args.extra), plan))
    table = {p: spread([r["accuracy"] for r in rows if r["precision"] == p]) for p in PRECISIONS}
    gap = abs(table["bf16"]["median"] - table["fp32"]["median"])
    noise = max(table["fp32"]["spread"], table["bf16"]["spread"])
    done = f"{len(rows)} of {2 * len(args.seeds)} runs finished (a partial table)" if len(rows) < 2 * len(
        args.seeds) else f"seeds {args.seeds}"
    print(f"Lab 02 course recipe, {args.size} size, {done}: evaluation-split accuracy")
    print(f"{'precision':<10}{'min':>8}{'median':>8}{'max':>8}  per seed")
    for p in PRECISIONS:
        per_seed = " ".join(f"{r['accuracy']:.4f}" + (" (emulated)" if r["bf16"].startswith("emulated") else "")
                            for r in rows if r["precision"] == p)
        t = table[p]
        print(f"{p:<10}{t['min']:>8.4f}{t['median']:>8.4f}{t['max']:>8.4f}  {per_seed}")
    result = {"size": args.size, "seeds": args.seeds, "complete": len(rows) == 2 * len(args.seeds),
              "runs": rows, "table": table, "median_gap": round(gap, 4),
              "seed_spread": round(noise, 4), "bf16_within_noise": gap < noise,
              "wall_seconds": round(time.perf_counter() - started, 1), "jobs": args.jobs, "threads_per_job": threads}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"RESULT fp32_median={table['fp32']['median']:.4f} bf16_median={table['bf16']['median']:.4f} "
          f"fp32_spread={table['fp32']['spread']:.4f} bf16_spread={table['bf16']['spread']:.4f} "
          f"median_gap={gap:.4f} bf16_within_noise={'yes' if gap < noise else 'no'} "
          f"complete={'yes' if result['complete'] else 'no'}")
    return result


if __name__ == "__main__":
    main()
