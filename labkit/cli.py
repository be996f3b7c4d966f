"""The `labkit` command: `labkit run <lab>`, `labkit smoke`, and lab-specific commands.

Each lab lives in `labkit/experiments/<module>.py` and exposes
`add_arguments(parser)`, `main(args) -> dict` and `smoke(out_dir) -> dict`.
Other commands are registered in `COMMANDS` as (module, add-arguments function, main function).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from labkit import config
from labkit.errors import LabkitError

#: lab name on the command line -> module under labkit.experiments
EXPERIMENTS: dict[str, str] = {
    "function-fitting": "labkit.experiments.function_fitting",
    "cifar10": "labkit.experiments.cifar10",
    "mnist": "labkit.experiments.mnist",
    "tiny-imagenet": "labkit.experiments.tiny_imagenet",
    "lm": "labkit.experiments.language_model",
}

#: extra commands: name -> (module, add-arguments function, main function, help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "compare": (
        "labkit.experiments.tiny_imagenet",
        "add_compare_arguments",
        "compare_main",
        "compare two checkpoints' predictions image by image",
    ),
    "generate": (
        "labkit.experiments.language_model",
        "add_generate_arguments",
        "generate_main",
        "generate text from a language-model checkpoint",
    ),
    "release": (
        "labkit.release",
        "add_arguments",
        "main",
        "write the student edition of the labs",
    ),
}


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name == name:  # the module itself is absent (lab not installed), not one of its imports
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one lab from the command line")
    labs = run.add_subparsers(dest="lab", required=True)
    for lab, module_name in EXPERIMENTS.items():
        module = _import(module_name)
        if module is None:
            continue
        lab_parser = labs.add_parser(lab, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(lab_parser)
        lab_parser.set_defaults(handler=module.main)

    smoke = sub.add_parser("smoke", help="run every available lab end to end at smoke size")
    smoke.add_argument("--out", type=Path, default=None, help="output folder (default runs/smoke)")
    smoke.add_argument("labs", nargs="*", help="only these labs (default: all)")
    smoke.set_defaults(handler=_smoke_main)

    for name, (module_name, add_fn, main_fn, help_text) in COMMANDS.items():
        module = _import(module_name)
        if module is None:
            continue
        cmd = sub.add_parser(name, help=help_text)
        getattr(module, add_fn)(cmd)
        cmd.set_defaults(handler=getattr(module, main_fn))
    return parser


def _smoke_main(args: argparse.Namespace) -> dict:
    """Run each lab's `smoke()` on generated data; write figures and a metrics table."""
    import os

    os.environ.setdefault("LABKIT_SMOKE", "1")
    out = args.out or config.runs_dir() / "smoke"
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    for lab, module_name in EXPERIMENTS.items():
        if args.labs and lab not in args.labs:
            continue
        module = _import(module_name)
        if module is None:
            print(f"[smoke] {lab}: not available, skipped")
            continue
        start = time.perf_counter()
        print(f"[smoke] {lab} ...", flush=True)
        metrics = module.smoke(out / lab)
        metrics = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
        metrics["seconds"] = round(time.perf_counter() - start, 1)
        rows[lab] = metrics
        print(f"[smoke] {lab}: {metrics}", flush=True)
    table = _markdown_table(rows)
    (out / "metrics.md").write_text(table)
    (out / "metrics.json").write_text(json.dumps(rows, indent=2))
    print(table)
    print(f"[smoke] figures and metrics written under {out}/")
    return rows


def _markdown_table(rows: dict[str, dict]) -> str:
    lines = ["| lab | metrics |", "| --- | --- |"]
    for lab, metrics in rows.items():
        shown = ", ".join(f"{k}={v}" for k, v in metrics.items())
        lines.append(f"| {lab} | {shown} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.handler(args)
    except LabkitError as err:  # bad data, checkpoint or options: the message says what to do
        print(f"labkit: error: {err}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
