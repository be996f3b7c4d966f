"""The `labkit` command: `labkit run <lab>` (one option per config field), `labkit smoke`, `COMMANDS` and the
labs' own commands. Every user error leaves as one `labkit: error: ...` line (a `LabkitError`)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from types import NoneType, UnionType
from typing import Any

from labkit import config
from labkit.errors import LabkitError, UsageError

#: name -> (module, add-arguments function, main function, help); a lab adds its own through `Lab.commands`
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "release": ("labkit.release", "add_arguments", "main", "write the student edition of the labs"),
    "reproduce": ("labkit.results", "add_arguments", "main",
                  "re-create a lab's committed reference run(s) in results/<lab>/<size>/"),
    "export": ("labkit.runner", "add_export_arguments", "export_main",
               "write a checkpoint's weights as a plain state_dict .pth (the course's hand-in file)"),
}

USAGE_ERROR, DATA_ERROR = 2, 1


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"labkit: error: {self.prog}: {message}\n")


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the non-None type, is_tuple) of a field annotation such as `int | None` or `tuple[int, ...]`."""
    args = typing.get_args(annotation)
    if isinstance(annotation, UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in args if a is not NoneType)
        args = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple:
        return args[0], True
    return annotation, False


def _converter(name: str, kind: type, meta: dict[str, Any], is_tuple: bool) -> Callable[[str], Any]:
    from labkit.lab import check_value

    def one(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        try:
            check_value(name, value, meta)
        except UsageError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return value

    if not is_tuple:
        return one
    converter = lambda text: tuple(one(part) for part in text.split(",") if part.strip())
    converter.__name__ = "comma-separated list"
    return converter


def add_config_options(parser: argparse.ArgumentParser, lab: Any) -> None:
    """One option per command-line field of the lab's config, with its help and the default of each size."""
    from labkit.lab import SIZES, config_fields, shown

    defaults = {size: lab.config(size) for size in SIZES}
    group = parser.add_argument_group(f"settings of {lab.name} (defaults: full size; other sizes where they differ)")
    for f, annotation in config_fields(lab.Config):
        meta = dict(f.metadata)
        if not meta.get("cli", True) or f.name in lab.unused_options:
            continue
        flag = "--" + f.name.replace("_", "-")
        full = getattr(defaults["full"], f.name)
        others = [f"{size} {shown(getattr(defaults[size], f.name))}" for size in SIZES
                  if size != "full" and getattr(defaults[size], f.name) != full]
        default_text = f"default {shown(full)}" + (f"; {', '.join(others)}" if others else "")
        help_text = f"{meta.get('help', '')} ({default_text})".replace("%", "%%")
        kind, is_tuple = _base_type(annotation)
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif meta.get("choices") and kind is str:
            group.add_argument(flag, choices=meta["choices"], default=None, help=help_text)
        elif kind in (int, float):
            group.add_argument(flag, type=_converter(f.name, kind, meta, is_tuple), default=None,
                               metavar="N,N" if is_tuple else kind.__name__.upper(), help=help_text)
        else:
            group.add_argument(flag, type=str, default=None, metavar="TEXT", help=help_text)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


def lab_parser(lab: Any) -> Parser:
    from labkit.lab import SIZES

    parser = Parser(prog=f"labkit run {lab.name}", description=lab.title, formatter_class=_HelpFormatter)
    parser.add_argument("--size", choices=SIZES, default=None,
                        help="smoke: seconds on a CPU on generated data; laptop: real data, about 15 minutes "
                             "on a 2-core CPU; full: the course's experiment (a GPU recommended). Default: full")
    parser.add_argument("--smoke", action="store_true", help="the same as --size smoke")
    if len(lab.recipes) > 1:
        parser.add_argument("--recipe", choices=list(lab.recipes), default=None,
                            help=f"named settings of this lab: {', '.join(lab.recipes)}")
    parser.add_argument("--resume", type=Path, default=None, metavar="CKPT",
                        help="continue this checkpoint's run with its own settings, into --out or the run folder "
                             "holding it; options may raise --epochs or set --time-budget, --device and the like")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the checkpoints and results of an earlier run in the output folder")
    lab.add_arguments(parser)
    add_config_options(parser, lab)
    return parser


def config_from_args(lab: Any, args: argparse.Namespace) -> Any:
    """The run's config: the size and recipe, then every option given; on --resume the checkpoint's config with
    the options given (the runner refuses those a resume cannot change), written into --out, else into the
    run folder that holds the checkpoint file. `size` and `recipe` (cli=False) come from --size/--recipe."""
    from labkit import runner
    from labkit.lab import config_fields, shown

    given = {f.name: getattr(args, f.name) for f, _ in config_fields(lab.Config) if f.metadata.get("cli", True)
             and f.name not in lab.unused_options and getattr(args, f.name, None) is not None}
    if args.smoke and args.size not in (None, "smoke"):
        raise UsageError(f"--smoke and --size {args.size} contradict each other: give one of them.")
    size, recipe, resume = "smoke" if args.smoke else args.size, getattr(args, "recipe", None), args.resume
    if resume is None:
        cfg = lab.config(size or "full", recipe, **given)
    elif not resume.is_file():
        raise UsageError(f"--resume {resume}: " + ("a broken or looping link, not a checkpoint file."
                                                   if resume.is_symlink() else "no such checkpoint file."))
    elif "out" not in given and resume.parent.name != "checkpoints":
        raise UsageError(f"--resume {resume}: the file is not in a run's checkpoints/ folder; give --out DIR for "
                         "the resumed run's outputs.")
    else:
        given.setdefault("out", str(resume.parent.parent))
        cfg = runner.config_from_checkpoint(resume, lab.name, size=size, recipe=recipe, **given)
    if "at_epochs" in given and max(cfg.at_epochs, default=0) > cfg.epochs:
        raise UsageError(f"--at-epochs {shown(cfg.at_epochs)}: a run of --epochs {cfg.epochs} never reaches "
                         f"{max(cfg.at_epochs)}; keep epochs up to {cfg.epochs}, or raise --epochs.")
    return cfg


def run_main(argv: Sequence[str]) -> Any:
    from labkit.lab import discover, get_lab
    from labkit.runner import command_run

    if not argv or argv[0] in ("-h", "--help"):
        top, labs = Parser(prog="labkit run", description="Run one lab from the command line."), discover()
        top.add_argument("lab", choices=list(labs), help="; ".join(f"{k}: {v.title}" for k, v in labs.items()))
        top.parse_args(argv)  # prints help or the usage error
        return USAGE_ERROR
    lab = get_lab(argv[0])
    args = lab_parser(lab).parse_args(argv[1:])
    return command_run(lab, config_from_args(lab, args), args)


def smoke_main(argv: Sequence[str]) -> dict[str, dict]:
    """`labkit smoke [LAB ...]`: each lab at smoke size on generated data; figures and a metrics table."""
    from labkit.files import write_text_atomic
    from labkit.lab import get_lab, lab_names
    from labkit.runner import smoke_run, writable_folder, write_json
    from labkit.tables import markdown_table

    parser = Parser(prog="labkit smoke", description="Run every lab (or the named ones) end to end at smoke "
                    "size, on generated data; write figures and a metrics table.")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/smoke)")
    parser.add_argument("labs", nargs="*", help=f"only these labs (default: all of {', '.join(lab_names())})")
    args = parser.parse_args(argv)
    labs = [get_lab(name) for name in (args.labs or lab_names())]  # an unknown name is an error
    out = writable_folder(args.out or config.runs_dir() / "smoke")  # before the training, not after it
    rows: dict[str, dict] = {}
    for lab in labs:
        start = time.perf_counter()
        print(f"[smoke] {lab.name} ...", flush=True)
        metrics = {k: round(v, 4) if isinstance(v, float) else v for k, v in smoke_run(lab, out / lab.name).items()}
        rows[lab.name] = {**metrics, "seconds": round(time.perf_counter() - start, 1)}
        print(f"[smoke] {lab.name}: {rows[lab.name]}", flush=True)
    cells = [[name, ", ".join(f"{k}={v}" for k, v in m.items())] for name, m in rows.items()]
    table = ("Smoke size: tiny generated (synthetic) data, seconds per lab. These numbers show that each lab "
             "runs end to end; they are not results.\n\n" + markdown_table(["lab", "metrics"], cells, numeric_from=99))
    write_text_atomic(out / "metrics.md", table + "\n")
    write_json(out / "metrics.json", {"size": "smoke", "data": "generated", "labs": rows})
    print(table)
    print(f"[smoke] figures and metrics written under {out}/")
    return rows


def all_commands() -> dict[str, tuple[Callable, Callable, str]]:
    """Every extra command (the shared ones and each lab's) as (add_arguments, main, help)."""
    from labkit.lab import discover

    def shared(module: str, add_fn: str, main_fn: str, help_text: str) -> tuple[Callable, Callable, str]:
        return (lambda parser: getattr(importlib.import_module(module), add_fn)(parser),
                lambda args: getattr(importlib.import_module(module), main_fn)(args), help_text)

    commands = {name: shared(*spec) for name, spec in COMMANDS.items()}
    for lab in discover().values():
        commands.update(lab.commands)
    return commands


def command_main(name: str, argv: Sequence[str]) -> Any:
    add_arguments, command, help_text = all_commands()[name]
    parser = Parser(prog=f"labkit {name}", description=help_text)
    add_arguments(parser)
    return command(parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"run", "smoke", *COMMANDS}
    if argv and argv[0] not in commands and not argv[0].startswith("-"):
        commands |= set(all_commands())  # a lab's own command (imports the labs)
    if not argv or argv[0] not in commands:  # help, or the error naming the commands
        parser = Parser(prog="labkit", description=__doc__.splitlines()[0])
        sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        sub.add_parser("run", help="run one lab from the command line (labkit run LAB --help)", add_help=False)
        sub.add_parser("smoke", help="run every lab end to end at smoke size, on generated data", add_help=False)
        for name, (*_, help_text) in all_commands().items():
            sub.add_parser(name, help=help_text, add_help=False)
        parser.parse_args(argv[:1])
        return USAGE_ERROR
    command, rest = argv[0], argv[1:]
    try:
        with config.running_command():  # every fit shows its epochs (a bar, or a line per epoch in a log)
            result = (run_main(rest) if command == "run" else smoke_main(rest) if command == "smoke"
                      else command_main(command, rest))
    except LabkitError as err:  # bad data, checkpoint or options: the message says what to do
        print(f"labkit: error: {err}", file=sys.stderr)
        return USAGE_ERROR if isinstance(err, UsageError) else DATA_ERROR
    except KeyboardInterrupt as err:
        print(f"labkit: interrupted{': ' + str(err) if str(err) else ''}", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
