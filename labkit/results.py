"""Committed reference runs: what a student should expect to see, measured, with its provenance. `labkit reproduce`
runs a lab's reference experiment(s) into `results/<lab>/<size>/` and records `reference.json` (command, device,
wall time, versions, commit, date, load); notebooks show it beside the student's run; tools/results_tables.py writes
the README's tables from it."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from labkit.files import write_text_atomic
from labkit.tables import Table, show_table

RESULTS = Path(__file__).resolve().parent.parent / "results"


def results_dir() -> Path:
    """`results/` of this checkout (`LABKIT_RESULTS` overrides it)."""
    return Path(os.environ.get("LABKIT_RESULTS") or RESULTS)


def reference_dir(lab: str, size: str) -> Path:
    return results_dir() / lab / size


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).resolve().parent,
                              timeout=10, check=False).stdout.strip()

    try:
        commit, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit or "unknown") + ("+changes" if dirty else "")


#: above this 1-minute load average before or after, a reference run's wall times are not figures
QUIET_LOAD = 1.5
#: the "after" load is read this long after the runs end, when their own threads no longer count in it
SETTLE_SECONDS = float(os.environ.get("LABKIT_SETTLE_SECONDS", "90"))


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def provenance(command: Sequence[str], seconds: float, device: str, load_before: float | None = None,
               commit: str | None = None) -> dict:
    """Where and how a reference ran, with the load average before and after (a busy machine's times are longer);
    `commit`: the labkit commit read before the runs (their own output files would mark the tree changed)."""
    import torch

    time.sleep(SETTLE_SECONDS)
    after = load_average()
    loads = [x for x in (load_before, after) if x is not None]
    return {"command": " ".join(command), "device": device, "wall_seconds": round(seconds, 1),
            "torch": torch.__version__, "python": platform.python_version(), "labkit_commit": commit or _commit(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load_average_before": load_before,
            "load_average_after": after, "quiet": bool(loads) and max(loads) <= QUIET_LOAD,
            "date": _dt.date.today().isoformat()}


def load_reference(lab: str, size: str) -> dict[str, Any] | None:
    path = reference_dir(lab, size) / "reference.json"
    return json.loads(path.read_text()) if path.is_file() else None


def reference_label(ref: Mapping[str, Any]) -> str:
    """'reference run: laptop size, cpu (2 cores), 2026-12-01, 812 s of wall time'."""
    prov = ref.get("provenance", {})
    return (f"reference run: {ref.get('size', '?')} size, {prov.get('device', '?')}, {prov.get('date', '?')}, "
            f"{prov.get('wall_seconds', 0):.0f} s of wall time")


def show_reference(lab: str, size: str, figures: Sequence[str] = ("curves.png",)) -> dict[str, Any] | None:
    """Display the committed reference run's numbers and figures (in a notebook; text elsewhere)."""
    if (ref := load_reference(lab, size)) is None:
        print(f"no committed reference run for {lab} at {size} size (results/{lab}/{size}/)")
        return None
    from labkit.plots import in_notebook

    print(reference_label(ref))
    rows = [[name, ", ".join(f"{k} {_fmt(v)}" for k, v in run.items())] for name, run in ref["runs"].items()]
    show_table(Table(["run", "results"], rows, numeric_from=9))
    for name in figures:
        for path in sorted(reference_dir(lab, size).glob(f"**/{name}")):
            if in_notebook():
                from IPython.display import Image, display

                display(Image(filename=str(path)))
            else:
                print(f"figure: {path}")
    return ref


def check_against_reference(lab: str, size: str, run: str, key: str, value: float, *,
                            tolerance: float, higher_is_better: bool = True) -> None:
    """Tell the student when their `value` of `key` is more than `tolerance` worse than the reference run's;
    silent pass-through when no reference is committed for this size."""
    if (ref := load_reference(lab, size)) is None or run not in ref["runs"] or key not in ref["runs"][run]:
        print(f"(no reference value of {key} for {lab} at {size} size to compare with)")
        return
    expected = float(ref["runs"][run][key])
    if ((expected - value) if higher_is_better else (value - expected)) > tolerance:
        from labkit.check import CheckFailed

        raise CheckFailed(f"Your {key} is {value:.4g}; the {reference_label(ref)} reached {expected:.4g}. That "
                          f"is more than {tolerance:g} {'below' if higher_is_better else 'above'} it: check the "
                          "settings of your run (epochs, learning rate, data) against the reference's command: "
                          f"{ref.get('provenance', {}).get('command', '?')}")
    print(f"✔ {key} {value:.4g} is within {tolerance:g} of the {reference_label(ref)} ({expected:.4g})")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def reproduce(lab_name: str, size: str, argv: Sequence[str] | None = None) -> Path:
    """Run a lab's reference experiment(s) at `size` into `results/<lab>/<size>/`; record them in reference.json."""
    from labkit.device import describe_device
    from labkit.lab import get_lab
    from labkit.runner import ESTIMATES, reference_runs

    lab, load_before, started, first = get_lab(lab_name), load_average(), time.perf_counter(), len(ESTIMATES)
    commit = _commit()
    runs = reference_runs(lab, size, reference_dir(lab.name, size))
    prov = provenance(list(argv or ["labkit", "reproduce", lab.name, "--size", size]), time.perf_counter() - started,
                      describe_device(lab.config(size).device), load_before, commit)
    record = {"lab": lab.name, "size": size, "runs": {k: dict(v) for k, v in runs.items()}, "notes": "",
              "estimates": ESTIMATES[first:], "provenance": prov}
    return write_text_atomic(reference_dir(lab.name, size) / "reference.json",
                             json.dumps(record, indent=2, default=str) + "\n")


def add_arguments(parser: Any) -> None:
    from labkit.lab import SIZES, lab_names

    parser.add_argument("lab", choices=lab_names(), help="which lab")
    parser.add_argument("--size", choices=SIZES, default="laptop", help="which size to reproduce")


def main(args: Any) -> dict[str, Any]:
    path = reproduce(args.lab, args.size, ["labkit", "reproduce", args.lab, "--size", args.size])
    print(f"reference run recorded in {path}")
    return {"reference": str(path)}
