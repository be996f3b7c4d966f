"""A broad fault-injection pass over the `labkit` command (issue 16), as a clumsy or hostile user tries it.

    OMP_NUM_THREADS=1 flock /tmp/cpu.lock python tools/fault_pass.py [--only CATEGORY ...] [--work DIR]
    python tools/fault_pass.py --families [FAMILY ...] [--quick] [--users root student] [--match TEXT]

Each case runs the command as a subprocess with a timeout (kills, bad checkpoints, bad data sets,
concurrency, DDP, environment, output folders, command lines). The bad-option cases (0, -1, nan, inf,
a word and, for whole numbers, 2.5, for every numeric option of every lab: several hundred) run in
one subprocess per lab that calls `labkit.cli.main` once per case with its own alarm timeout: starting
a Python with torch per case would cost about 4 s each. Every outcome is classified:

* handled: exit 0 (or the expected exit, e.g. 130 after SIGTERM) and the result is correct;
* clear error: one `labkit: error:` line, exit 1 or 2, no traceback;
* wrong advice: a clear error that does not name the file or option at fault, or advises the wrong fix
  (or an error printed on stdout instead of one `labkit: error:` line on stderr);
* silent wrong: exit 0 but wrong (an option ignored, a bad file used, the wrong thing written);
* traceback: a Python traceback, or another exit without a labkit message;
* hang: the timeout passed;
* data lost: a checkpoint that loaded before the case no longer loads, or any byte of a file the case
  protects (its input, another run, the sources, a read-only folder) changed, was removed or written to.

The generated families (`--families`, see FAMILIES) build their cases from the labs' config fields, the
commands that write files, the environment folders, the two users (root and the unprivileged STUDENT) and
the points in time a run can stop at, instead of a list; `--quick` keeps a covering subset of each product.

It prints the table and a line per case that is none of handled / clear error. Smoke sizes and
generated data throughout; it writes only under --work (default a temporary folder). Not a test: the
fault suite in tests/test_faults*.py holds a fast test for each class of fault this pass found.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))  # this checkout's labkit, not an installed one (the cases run it too)
CLASSES = ("handled", "clear error", "wrong advice", "silent wrong", "traceback", "hang", "data lost")
BAD_VALUES = ("0", "-1", "nan", "inf", "abc")


@dataclass
class Result:
    rc: int | None
    out: str
    err: str
    seconds: float
    #: a case's own verdict (outcome, why), e.g. "data lost" after a kill; None: classify by exit and output
    verdict: tuple[str, str] | None = None


@dataclass
class Case:
    category: str
    name: str
    argv: list[str] | None = None           # labkit arguments (run as `python -m labkit ...`)
    cmd: list[str] | None = None            # or a whole command line
    env: dict[str, str | None] = field(default_factory=dict)  # None: the variable unset
    setup: Callable[[Path], Any] | None = None
    #: (result, case folder) -> True when an exit-0 result is correct (default: exit 0 is correct)
    check: Callable[[Result, Path], bool] | None = None
    expect_rc: int = 0                      # the exit code of a handled outcome (130 after SIGTERM)
    timeout: float = 120
    #: checkpoints that must still load afterwards (relative to the case folder)
    keep: tuple[str, ...] = ()
    runner: Callable[[Case, Path], Result] | None = None  # a case with its own process choreography
    #: "root", or "student": the command runs as the unprivileged user STUDENT (setpriv, the same environment)
    user: str = "root"
    #: (case folder) -> files or folders whose every byte must be the same afterwards (else: data lost)
    protect: Callable[[Path], list[Path]] | None = None
    #: words a clear error must contain (the file or option it is about, the right advice); else wrong advice
    advice: tuple[str, ...] = ()
    #: words that, in an error message, are the wrong advice for this case
    misadvice: tuple[str, ...] = ()


# --- plumbing -------------------------------------------------------------------------------------

def base_env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
    env.update({"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "LABKIT_DATA": str(work / "data"),
                "LABKIT_CACHE": str(work / "cache"), "LABKIT_RUNS": str(work / "runs"), "LABKIT_PROGRESS": "0"})
    return env


def labkit_cmd(*argv: str) -> list[str]:
    return [sys.executable, "-m", "labkit", *argv]


def run_process(cmd: list[str], env: dict[str, str], timeout: float, cwd: Path) -> Result:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        rc = None
    return Result(rc, out, err, time.perf_counter() - start)


def loads(path: Path) -> bool:
    from labkit.checkpoint import load_checkpoint

    try:
        load_checkpoint(path)
        return True
    except Exception:  # noqa: BLE001 (any failure is a lost checkpoint)
        return False


def classify(case: Case, res: Result, folder: Path) -> tuple[str, str]:
    if res.verdict is not None:
        return res.verdict
    lost = [k for k in case.keep if not loads(folder / k)]
    if lost:
        return "data lost", f"{', '.join(lost)} no longer loads"
    if res.rc is None:
        return "hang", f"no exit within {case.timeout:.0f} s"
    if "Traceback (most recent call last)" in res.err or "Traceback (most recent call last)" in res.out:
        last = [line for line in res.err.splitlines() if line.strip()][-1:] or ["?"]
        return "traceback", last[0][:160]
    if res.rc == case.expect_rc:
        try:
            ok = case.check(res, folder) if case.check is not None else True
        except Exception as err:  # noqa: BLE001
            ok, why = False, f"check failed: {type(err).__name__}: {err}"
        else:
            why = "" if ok else "exit as expected but the result is wrong"
        return ("handled", "") if ok else ("silent wrong", why)
    if res.rc in (1, 2) and "labkit: error:" in res.err:
        said = next(line for line in res.err.splitlines() if "labkit: error:" in line)
        text = res.err
        missing = [w for w in case.advice if w.lower() not in text.lower()]
        wrong = [w for w in case.misadvice if w.lower() in text.lower()]
        if missing or wrong:
            why = (f"does not name {missing}" if missing else "") + (f" advises {wrong}" if wrong else "")
            return "wrong advice", f"{why.strip()}: {said[:160]}"
        return "clear error", said[:160]
    if res.rc in (1, 2) and "error" in res.out.lower() and "labkit: error:" not in res.err:
        said = next((line for line in res.out.splitlines() if "error" in line.lower()), "")
        return "wrong advice", f"the error is on stdout, not one `labkit: error:` line on stderr: {said[:140]}"
    if res.rc == 0:
        return "silent wrong", "exit 0 where an error was expected"
    return "traceback", f"exit {res.rc} without a labkit message: {res.err.strip()[-160:]}"


def metrics(folder: Path, out: str = "out") -> dict[str, Any]:
    return json.loads((folder / out / "metrics.json").read_text())


# --- fixtures (built once) ------------------------------------------------------------------------

def prepare(work: Path, families: bool = False) -> dict[str, Path]:
    """Generated data sets and one good smoke run of each lab whose checkpoints the cases break."""
    from labkit.labs.cifar10.data import write_synthetic_cifar10
    from labkit.labs.lm.data import write_synthetic_wikitext
    from labkit.labs.mnist.data import write_synthetic_mnist
    from labkit.labs.tiny_imagenet.data import write_synthetic_tiny_imagenet

    fx = work / "fixtures"
    paths = {"tiny": write_synthetic_tiny_imagenet(fx / "tiny", n_classes=4, n_train_per_class=6, n_val_per_class=3),
             "mnist": write_synthetic_mnist(fx / "mnist", n_train=300, n_test=100),
             "wikitext": Path(write_synthetic_wikitext(fx / "wikitext")),
             "cifar": Path(write_synthetic_cifar10(fx / "cifar"))}
    env = base_env(work)
    runs = {f"good-{lab}": (lab, ("--schedule", "step") if lab == "mnist" else ())  # resumable for more epochs
            for lab in ("mnist", "lm", "tiny-imagenet")}
    if families:  # a mid-run checkpoint to continue within the planned schedule
        runs["good-lm"] = ("lm", ("--at-epochs", "1"))
    if families:  # the families resume every lab, and a run stopped within its first epoch
        runs["good-function-fitting"] = ("function-fitting", ())
        runs["mid-mnist"] = ("mnist", ("--time-budget", "1e-9"))
    for key, (lab, extra) in runs.items():
        out = fx / key
        wanted = ["last.pt"] + (["epoch_001.pt"] if "--at-epochs" in extra else [])
        if not all((out / "checkpoints" / name).is_file() for name in wanted):
            res = run_process(labkit_cmd("run", lab, "--smoke", "--epochs", "2", "--out", str(out), "--overwrite",
                                         "--no-tensorboard", *extra), env, 300, work)
            if res.rc != 0:
                raise SystemExit(f"fixture run of {lab} failed:\n{res.err[-2000:]}")
        paths[key] = out / "checkpoints"
    if "mid-mnist" in paths:  # resumed without the budget that stopped it within its first epoch
        import torch

        last = paths["mid-mnist"] / "last.pt"
        data = torch.load(last, weights_only=True)
        if data["config"].get("time_budget") is not None:
            data["config"]["time_budget"] = None
            torch.save(data, last)
    paths["work"] = work
    return paths


def copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, symlinks=True)
    return dst


# --- the cases ------------------------------------------------------------------------------------

def smoke(lab: str, *extra: str, out: str = "out") -> Callable[[Path], list[str]]:
    return lambda folder: ["run", lab, "--smoke", "--out", str(folder / out), "--no-tensorboard", *extra]


def checkpoint_cases(fx: dict[str, Path]) -> list[Case]:
    import torch

    good = fx["good-mnist"] / "best.pt"

    def edited(change: Callable[[dict], None]) -> Callable[[Path], None]:
        def setup(folder: Path) -> None:
            data = torch.load(good, weights_only=True)
            change(data)
            torch.save(data, folder / "bad.pt")
        return setup

    def raw(content: Callable[[], bytes]) -> Callable[[Path], None]:
        return lambda folder: (folder / "bad.pt").write_bytes(content())

    def legacy(folder: Path) -> None:
        data = torch.load(good, weights_only=True)
        torch.save(data, folder / "bad.pt", _use_new_zipfile_serialization=False)

    def evil(folder: Path) -> None:
        data = torch.load(good, weights_only=True)
        data["config"]["evil"] = Evil()
        torch.save(data, folder / "bad.pt")

    def not_executed(res: Result, folder: Path) -> bool:
        return not Path(EVIL_MARK).exists()

    def nan_weights(data: dict) -> None:
        name = next(k for k, v in data["model"].items() if v.is_floating_point())
        data["model"][name] = torch.full_like(data["model"][name], float("nan"))

    def unknown_arch(folder: Path) -> None:
        data = torch.load(fx["good-tiny-imagenet"] / "best.pt", weights_only=True)
        data["config"]["arch"] = "resnet99"
        torch.save(data, folder / "bad.pt")

    breakages: dict[str, Callable[[Path], None]] = {
        "zero-byte file": raw(lambda: b""),
        "truncated to half": raw(lambda: good.read_bytes()[: good.stat().st_size // 2]),
        "random bytes": raw(lambda: os.urandom(4096)),
        "a text file": raw(lambda: b"epoch: 3\nlr: 0.1\n"),
        "legacy (non-zip) format": legacy,
        "pickle that runs code": evil,
        "version as a string": edited(lambda d: d.update(version="1")),
        "version None": edited(lambda d: d.update(version=None)),
        "no model key": edited(lambda d: d.pop("model")),
        "history a list": edited(lambda d: d.update(history=[1, 2])),
        "epoch a string": edited(lambda d: d.update(epoch="3")),
        "epoch negative": edited(lambda d: d.update(epoch=-1)),
        "config without lab": edited(lambda d: d["config"].pop("lab")),
        "rng state garbage": edited(lambda d: d.update(rng={"torch": torch.zeros(3, dtype=torch.uint8)})),
        "NaN weights": edited(nan_weights),
        "a newer format version": edited(lambda d: d.update(version=99)),
    }
    cases = []
    for name, setup in breakages.items():
        check = not_executed if name == "pickle that runs code" else None
        cases.append(Case("checkpoint", f"run mnist --resume: {name}", setup=setup, check=check,
                          argv=lambda folder: ["run", "mnist", "--resume", str(folder / "bad.pt")]))
    cases += [
        Case("checkpoint", "tiny --evaluate: unknown arch", setup=unknown_arch,
             argv=lambda f: ["run", "tiny-imagenet", "--resume", str(f / "bad.pt"), "--evaluate"]),
        Case("checkpoint", "tiny --evaluate: NaN weights", setup=edited(nan_weights),
             argv=lambda f: ["run", "tiny-imagenet", "--resume", str(f / "bad.pt"), "--evaluate"]),
        Case("checkpoint", "--resume a folder",
             argv=lambda f: ["run", "mnist", "--resume", str(fx["good-mnist"])]),
        Case("checkpoint", "--resume a missing file",
             argv=lambda f: ["run", "mnist", "--resume", str(f / "nope.pt")]),
        Case("checkpoint", "generate from an mnist checkpoint",
             argv=lambda f: ["generate", str(good)]),
        Case("checkpoint", "resume an lm checkpoint as mnist",  # refused before anything is written
             argv=lambda f: ["run", "mnist", "--resume", str(fx["good-lm"] / "best.pt"), "--out", str(f / "o")]),
        Case("checkpoint", "export a NaN checkpoint", setup=edited(nan_weights),
             argv=lambda f: ["export", str(f / "bad.pt"), str(f / "x.pth")]),
        Case("checkpoint", "export into a missing folder's file",
             argv=lambda f: ["export", str(good), str(f / "a-file" / "x.pth")],
             setup=lambda f: (f / "a-file").write_text("x")),
        Case("checkpoint", "compare a tiny and an mnist checkpoint",
             argv=lambda f: ["compare", str(fx["good-tiny-imagenet"] / "best.pt"), str(good)]),
    ]
    return cases


def data_cases(fx: dict[str, Path]) -> list[Case]:
    def tiny_with(change: Callable[[Path], None]) -> Callable[[Path], None]:
        def setup(folder: Path) -> None:
            change(copy_tree(fx["tiny"], folder / "data"))
        return setup

    def first_jpeg(root: Path) -> Path:
        return min(root.glob("train/*/images/*.JPEG"))

    def png_as_jpeg(root: Path) -> None:
        from PIL import Image

        victim = first_jpeg(root)
        Image.open(victim).save(victim, format="PNG")

    def link_out(root: Path) -> None:
        victim = first_jpeg(root)
        outside = root.parent / "outside.JPEG"
        outside.write_bytes(victim.read_bytes())
        victim.unlink()
        victim.symlink_to(outside)

    def warned_link(res: Result, folder: Path) -> bool:
        return "outside the dataset folder" in res.err + res.out

    def utf16(path: Path) -> None:
        path.write_bytes(path.read_text().encode("utf-16"))

    def latin1_line(path: Path) -> None:
        path.write_bytes(path.read_bytes() + "café\n".encode("latin-1"))

    def missing_val_file(root: Path) -> None:
        ann = root / "val" / "val_annotations.txt"
        ann.write_text(ann.read_text() + "val_99999.JPEG\tn00000001\t0\t0\t63\t63\n")

    def empty_class(root: Path) -> None:
        folder = min((root / "train").iterdir())
        for p in (folder / "images").iterdir():
            p.unlink()

    def flatten(root: Path) -> None:
        for p in list(root.glob("train/*/images/*.JPEG")):
            p.rename(root / "train" / p.name)

    tiny_breaks: dict[str, Callable[[Path], None]] = {
        "zero-byte JPEG": lambda r: first_jpeg(r).write_bytes(b""),
        "truncated JPEG": lambda r: first_jpeg(r).write_bytes(first_jpeg(r).read_bytes()[:200]),
        "text named .JPEG": lambda r: first_jpeg(r).write_bytes(b"hello, not an image"),
        "no wnids.txt": lambda r: (r / "wnids.txt").unlink(),
        "no val_annotations.txt": lambda r: (r / "val" / "val_annotations.txt").unlink(),
        "val annotations UTF-16": lambda r: utf16(r / "val" / "val_annotations.txt"),
        "wnids.txt UTF-16": lambda r: utf16(r / "wnids.txt"),
        "words.txt Latin-1 line": lambda r: latin1_line(r / "words.txt"),
        "val annotation naming a missing image": missing_val_file,
        "a class with no images": empty_class,
        "images not under <wnid>/images": flatten,
        "wnids.txt empty": lambda r: (r / "wnids.txt").write_text(""),
    }
    warned_empty = {"a class with no images": lambda r, f: "have no train images" in r.err + r.out}
    cases = [Case("data", f"tiny: {name}", setup=tiny_with(change), check=warned_empty.get(name),
                  argv=lambda f: ["run", "tiny-imagenet", "--smoke", "--data", str(f / "data"), "--epochs", "1",
                                  "--out", str(f / "out"), "--no-tensorboard"])
             for name, change in tiny_breaks.items()]
    cases.append(Case("data", "tiny: a PNG named .JPEG (readable: used)", setup=tiny_with(png_as_jpeg),
                      argv=lambda f: ["run", "tiny-imagenet", "--smoke", "--data", str(f / "data"), "--epochs", "1",
                                      "--out", str(f / "out"), "--no-tensorboard"]))
    cases.append(Case("data", "tiny: a symlink out of the data set (warned)", setup=tiny_with(link_out),
                      check=warned_link,
                      argv=lambda f: ["run", "tiny-imagenet", "--smoke", "--data", str(f / "data"), "--epochs", "1",
                                      "--out", str(f / "out"), "--no-tensorboard"]))

    def wt_with(change: Callable[[Path], None]) -> Callable[[Path], None]:
        def setup(folder: Path) -> None:
            root = copy_tree(fx["wikitext"], folder / "data")
            change(next(root.rglob("train.txt")).parent)
        return setup

    wt_breaks: dict[str, Callable[[Path], None]] = {
        "train.txt UTF-16": lambda d: utf16(d / "train.txt"),
        "valid.txt Latin-1 line": lambda d: latin1_line(d / "valid.txt"),
        "test.txt missing": lambda d: (d / "test.txt").unlink(),
        "train.txt empty": lambda d: (d / "train.txt").write_text(""),
        "test.txt a folder": lambda d: ((d / "test.txt").unlink(), (d / "test.txt").mkdir()),
    }
    def broken_data_cases(lab: str, breaks: dict[str, Callable[[Path], None]],
                          with_change: Callable[[Callable[[Path], None]], Callable[[Path], None]]) -> list[Case]:
        """One smoke run of `lab` per way of breaking its data folder (copied from the fixture first)."""
        return [Case("data", f"{lab}: {name}", setup=with_change(change),
                     argv=lambda f, lab=lab: ["run", lab, "--smoke", "--data", str(f / "data"), "--epochs", "1",
                                              "--out", str(f / "out"), "--no-tensorboard"])
                for name, change in breaks.items()]

    cases += broken_data_cases("lm", wt_breaks, wt_with)

    def mnist_with(change: Callable[[Path], None]) -> Callable[[Path], None]:
        def setup(folder: Path) -> None:
            root = copy_tree(fx["mnist"], folder / "data")
            change(next(root.rglob("raw")))
        return setup

    def all_idx(raw: Path, name: str, change: Callable[[Path], None]) -> None:
        for p in raw.glob(name + "*"):
            change(p)

    mnist_breaks: dict[str, Callable[[Path], None]] = {
        "train images zero-byte": lambda r: all_idx(r, "train-images-idx3-ubyte", lambda p: p.write_bytes(b"")),
        "train images truncated": lambda r: all_idx(
            r, "train-images-idx3-ubyte", lambda p: p.write_bytes(p.read_bytes()[:1000])),
        "labels with a wrong magic": lambda r: all_idx(
            r, "train-labels-idx1-ubyte", lambda p: p.write_bytes(b"\x00\x00\x09\x09" + p.read_bytes()[4:])),
    }
    cases += broken_data_cases("mnist", mnist_breaks, mnist_with)

    def cifar_with(change: Callable[[Path], None]) -> Callable[[Path], None]:
        def setup(folder: Path) -> None:
            root = copy_tree(fx["cifar"], folder / "data")
            change(next(root.rglob("data_batch_1")).parent)
        return setup

    cases += [
        Case("data", "cifar: a data batch truncated",
             setup=cifar_with(lambda d: (d / "data_batch_1").write_bytes((d / "data_batch_1").read_bytes()[:500])),
             argv=lambda f: ["run", "cifar10", "--smoke", "--data", str(f / "data"), "--epochs", "1",
                             "--out", str(f / "out"), "--no-tensorboard"]),
        Case("data", "cifar: a data batch is text",
             setup=cifar_with(lambda d: (d / "data_batch_1").write_text("not a pickle")),
             argv=lambda f: ["run", "cifar10", "--smoke", "--data", str(f / "data"), "--epochs", "1",
                             "--out", str(f / "out"), "--no-tensorboard"]),
        Case("data", "--data does not exist (each lab: lm)",
             argv=lambda f: ["run", "lm", "--smoke", "--data", str(f / "nowhere"), "--out", str(f / "out")]),
        Case("data", "--data does not exist (mnist)",
             argv=lambda f: ["run", "mnist", "--smoke", "--data", str(f / "nowhere"), "--out", str(f / "out")]),
        Case("data", "--data does not exist (tiny)",
             argv=lambda f: ["run", "tiny-imagenet", "--smoke", "--data", str(f / "nowhere"), "--out",
                             str(f / "out")]),
        Case("data", "--data does not exist (cifar10)",
             argv=lambda f: ["run", "cifar10", "--smoke", "--data", str(f / "nowhere"), "--out", str(f / "out")]),
        Case("data", "--data is a file (tiny)", setup=lambda f: (f / "file").write_text("x"),
             argv=lambda f: ["run", "tiny-imagenet", "--smoke", "--data", str(f / "file"), "--out", str(f / "out")]),
    ]
    return cases


def output_cases(fx: dict[str, Path]) -> list[Case]:
    def file_at(rel: str) -> Callable[[Path], None]:
        def setup(folder: Path) -> None:
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("a file")
        return setup

    full_disk = ("import errno, io, os, sys, labkit.files as f\n"
                 "class Full(io.FileIO):\n"
                 "    def write(self, b):\n"
                 "        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
                 "f.open = lambda p, m='r': Full(p, m.replace('b', ''))\n"
                 "from labkit.cli import main\n"
                 "sys.exit(main(sys.argv[1:]))\n")

    def keeps_old(res: Result, folder: Path) -> bool:
        return True

    def good_copy(folder: Path) -> None:
        copy_tree(fx["good-mnist"].parent, folder / "out")

    return [
        Case("output", "--out is a file", setup=file_at("out"), argv=smoke("function-fitting")),
        Case("output", "--out/tensorboard is a file", setup=file_at("out/tensorboard"),
             argv=lambda f: ["run", "mnist", "--smoke", "--out", str(f / "out")]),
        Case("output", "--out/checkpoints is a file", setup=file_at("out/checkpoints"), argv=smoke("mnist")),
        Case("output", "--out under a file", setup=file_at("parent"),
             argv=lambda f: ["run", "function-fitting", "--smoke", "--out", str(f / "parent" / "out")]),
        Case("output", "disk full during a save (resume)", setup=good_copy, keep=("out/checkpoints/last.pt",),
             cmd=lambda f: [sys.executable, "-c", full_disk, "run", "mnist", "--resume",
                            str(f / "out" / "checkpoints" / "last.pt"), "--epochs", "4", "--out", str(f / "out")]),
        Case("output", "disk full during a save (new run)",
             cmd=lambda f: [sys.executable, "-c", full_disk, "run", "function-fitting", "--smoke", "--out",
                            str(f / "out")]),
        *[Case("output", f"another run's checkpoints without --resume ({lab})", setup=good_copy,
               check=lambda r, f: False,  # exit 0 replaced that run's results: an error naming the options belongs
               keep=("out/checkpoints/best.pt", "out/checkpoints/last.pt"), argv=smoke(lab))
          for lab in ("function-fitting", "cifar10", "mnist", "tiny-imagenet", "lm")],
        Case("output", "a stale lock of a dead process",
             setup=lambda f: ((f / "out").mkdir(), (f / "out" / ".labkit-run.lock").write_text(
                 json.dumps({"pid": 4194000, "host": os.uname().nodename}))),
             check=lambda r, f: (f / "out" / "metrics.json").is_file(), argv=smoke("function-fitting")),
        Case("output", "orphan temp files of a killed save",
             setup=lambda f: ((f / "out" / "checkpoints").mkdir(parents=True),
                              (f / "out" / "checkpoints" / ".last.pt.tmp-4194001").write_bytes(b"x" * 100)),
             check=lambda r, f: not (f / "out" / "checkpoints" / ".last.pt.tmp-4194001").exists(),
             argv=smoke("function-fitting")),
        Case("output", "--out not writable (unprivileged user)", setup=_unwritable_out,
             cmd=lambda f: _as_nobody(labkit_cmd("run", "function-fitting", "--smoke", "--out", str(f / "ro" / "o")))),
    ]


def _unwritable_out(folder: Path) -> None:
    (folder / "ro").mkdir()
    folder.chmod(0o755)
    (folder / "ro").chmod(0o555)


def _as_nobody(cmd: list[str]) -> list[str]:
    """`cmd` without root's power to ignore file permissions (as a student's account runs it)."""
    if os.geteuid() != 0:
        return cmd
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--", *cmd]


def env_cases(fx: dict[str, Path]) -> list[Case]:
    def ro_data(folder: Path) -> None:
        root = copy_tree(fx["tiny"], folder / "ro-data" / "tiny-imagenet-200").parent
        for p in [root, *root.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)

    def untouched(res: Result, folder: Path) -> bool:
        return not (folder / "ro-data" / "cache").exists()

    return [
        Case("env", "LABKIT_DEVICE=banana", env={"LABKIT_DEVICE": "banana"}, argv=smoke("mnist")),
        Case("env", "LABKIT_DEVICE=banana (Lab 01)", env={"LABKIT_DEVICE": "banana"}, argv=smoke("function-fitting")),
        Case("env", "LABKIT_DEVICE=cuda without CUDA", env={"LABKIT_DEVICE": "cuda"}, argv=smoke("lm")),
        Case("env", "--device cuda without CUDA", argv=smoke("tiny-imagenet", "--device", "cuda")),
        Case("env", "--device banana", argv=smoke("cifar10", "--device", "banana")),
        Case("env", "--device cuda:7", argv=smoke("function-fitting", "--device", "cuda:7")),
        Case("env", "LABKIT_PROGRESS=maybe", env={"LABKIT_PROGRESS": "maybe"}, argv=smoke("function-fitting")),
        Case("env", "LABKIT_CACHE is a file", setup=lambda f: (f / "cachefile").write_text("x"),
             env={"LABKIT_CACHE": "{folder}/cachefile"},
             argv=lambda f: ["run", "tiny-imagenet", "--smoke", "--data", str(fx["tiny"]), "--out", str(f / "out")]),
        Case("env", "read-only LABKIT_DATA (unprivileged user)", setup=ro_data, check=untouched,
             env={"LABKIT_DATA": "{folder}/ro-data", "LABKIT_CACHE": ""},
             cmd=lambda f: _as_nobody(labkit_cmd("run", "tiny-imagenet", "--size", "laptop", "--epochs", "1",
                                                 "--out", str(f / "o")))),
    ]


def cli_cases(fx: dict[str, Path]) -> list[Case]:
    good = fx["good-mnist"] / "last.pt"
    return [
        Case("cli", "unknown lab", argv=["run", "banana"]),
        Case("cli", "unknown command", argv=["train", "mnist"]),
        Case("cli", "--smoke with --size full", argv=["run", "mnist", "--smoke", "--size", "full"]),
        Case("cli", "--resume a smoke run with --size laptop", argv=["run", "mnist", "--resume", str(good), "--size",
                                                                    "laptop"]),
        Case("cli", "--epochs without a value", argv=["run", "mnist", "--smoke", "--epochs"]),
        Case("cli", "--lr given twice (the last wins)", argv=smoke("function-fitting", "--lr", "0.5", "--lr", "0.001"),
             check=lambda r, f: metrics(f)["config"]["lr"] == 0.001),
        Case("cli", "lm --nhead not dividing --emsize", argv=smoke("lm", "--nhead", "3")),
        Case("cli", "--at-epochs beyond --epochs", argv=smoke("mnist", "--epochs", "2", "--at-epochs", "5"),
             check=lambda r, f: (f / "out" / "metrics.json").is_file()),
        Case("cli", "--time-budget 1e-9 (stops at once, resumable)", argv=smoke("mnist", "--time-budget", "1e-9"),
             check=lambda r, f: "resume with --resume" in r.out + r.err
             and loads(f / "out" / "checkpoints" / "last.pt")),
        Case("cli", "lm --smoke --data honoured (missing folder)",
             argv=lambda f: ["run", "lm", "--smoke", "--data", "/does/not/exist", "--out", str(f / "out")]),
        Case("cli", "function-fitting huge lr: diverges, says so",
             argv=smoke("function-fitting", "--lr", "1e6"),
             check=lambda r, f: "diverged" in r.out + r.err and "MSE vs f(x)" not in r.out),
        Case("cli", "export to a folder", argv=lambda f: ["export", str(good), str(f)]),
        Case("cli", "generate without a checkpoint", argv=["generate"]),
    ]


def kill_cases(fx: dict[str, Path]) -> list[Case]:
    cases = []
    for delay in (5.0, 8.0):
        cases.append(Case("kill", f"kill -9 during frequent saves at {delay:.1f} s, then resume",
                          runner=_kill_then_resume(signal.SIGKILL, delay), timeout=240))
    for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl-C (SIGINT)")):
        cases.append(Case("kill", f"{name} during training: checkpoint + resume", expect_rc=0,
                          runner=_kill_then_resume(sig, 7.0), timeout=240))
    cases.append(Case("kill", "kill -9 during a resume keeps the old best.pt", keep=("out/checkpoints/best.pt",),
                      runner=_kill_a_resume(fx), timeout=240))
    return cases


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 90.0) -> None:
    """Until `path` exists (or the process ended, or `seconds` passed): the case then acts on a running run."""
    deadline = time.monotonic() + seconds
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def _kill_then_resume(sig: int, delay: float) -> Callable[[Case, Path], Result]:
    """Start an mnist run that writes last.pt every few milliseconds, send `sig` after `delay` s, check
    that every checkpoint left loads, then resume from last.pt (or rerun into the folder)."""

    def go(case: Case, folder: Path) -> Result:
        env = base_env(folder.parent.parent)
        out = folder / "out"
        cmd = labkit_cmd("run", "mnist", "--smoke", "--epochs", "4", "--checkpoint-minutes", "0.0002", "--out",
                         str(out), "--no-tensorboard")
        proc = subprocess.Popen(cmd, env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        _wait_for(out / "checkpoints" / "last.pt", proc)  # "during training": once it has saved, not at start-up
        time.sleep(delay)
        first_rc = proc.poll()
        if first_rc is None:
            proc.send_signal(sig)
        try:
            out1, err1 = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return Result(None, "", "the run did not stop after the signal", 60)
        if "Traceback" in err1:
            return Result(proc.returncode, out1, err1, 0)
        hinted = "resume with --resume" in err1
        if sig != signal.SIGKILL and first_rc is None and (proc.returncode != 130 or not hinted):
            why = f"after the signal: exit {proc.returncode}, resume hint {hinted}"
            return Result(proc.returncode, out1, err1, 0, ("silent wrong", why))
        broken = [p.name for p in (out / "checkpoints").glob("*.pt") if not loads(p)]
        if broken:
            return Result(0, out1, err1, 0, ("data lost", f"unloadable after the kill: {broken}"))
        last = out / "checkpoints" / "last.pt"
        argv = ["run", "mnist", "--resume", str(last)] if last.is_file() else \
            ["run", "mnist", "--smoke", "--epochs", "4", "--out", str(out), "--no-tensorboard", "--overwrite"]
        res = run_process(labkit_cmd(*argv), env, 180, folder)
        if res.rc == 0:
            orphans = [p.name for p in (out / "checkpoints").glob(".*.tmp-*")]
            record = json.loads((out / "metrics.json").read_text())
            if orphans or record["summary"]["epochs_run"] != 4:
                epochs = record["summary"]["epochs_run"]
                res.verdict = ("silent wrong", f"after resume: orphans {orphans}, epochs {epochs}")
        return res

    return go


def _kill_a_resume(fx: dict[str, Path]) -> Callable[[Case, Path], Result]:
    def go(case: Case, folder: Path) -> Result:
        copy_tree(fx["good-mnist"].parent, folder / "out")
        env = base_env(folder.parent.parent)
        cmd = labkit_cmd("run", "mnist", "--resume", str(folder / "out" / "checkpoints" / "last.pt"), "--epochs", "6",
                         "--checkpoint-minutes", "0.0002", "--out", str(folder / "out"))  # the copy, not the fixture
        proc = subprocess.Popen(cmd, env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        time.sleep(7.0)
        proc.kill()
        proc.communicate()
        return Result(0, "", "", 7.0)

    return go


def concurrency_cases(fx: dict[str, Path]) -> list[Case]:
    def two(lab: str, second_extra: tuple[str, ...] = (),
            first_extra: tuple[str, ...] = ()) -> Callable[[Case, Path], Result]:
        def go(case: Case, folder: Path) -> Result:
            env = base_env(folder.parent.parent)
            out = folder / "out"
            base = ["run", lab, "--smoke", "--out", str(out), "--no-tensorboard"]
            first = subprocess.Popen(labkit_cmd(*base, "--lr", "0.01", *first_extra), env=env, cwd=folder,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _wait_for(out / ".labkit-run.lock", first)  # the first run holds the folder (start-up takes seconds)
            second = subprocess.Popen(labkit_cmd(*base, "--lr", "0.02", *second_extra), env=env, cwd=folder,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                o1, e1 = first.communicate(timeout=150)
                o2, e2 = second.communicate(timeout=150)
            except subprocess.TimeoutExpired:
                first.kill(), second.kill()
                return Result(None, "", "", 150)
            err = e1 + e2
            if "Traceback" in err:
                return Result(1, o1 + o2, err, 0)
            codes = sorted([first.returncode, second.returncode])
            if codes != [0, 1] or "in use by another run" not in err:
                why = f"exit codes {codes}, lock message {'in use by another run' in err}"
                return Result(0, o1 + o2, err, 0, ("silent wrong", why))
            record = json.loads((out / "metrics.json").read_text())
            from labkit.checkpoint import load_checkpoint

            lrs = {load_checkpoint(p).config["lr"] for p in (out / "checkpoints").glob("*.pt")}
            if lrs != {record["config"]["lr"]}:
                why = f"mixed results: checkpoints {lrs}, metrics {record['config']['lr']}"
                return Result(0, o1 + o2, err, 0, ("silent wrong", why))
            return Result(0, o1 + o2, err, 0)
        return go

    return [Case("concurrency", f"two {lab} runs into one --out at once", runner=two(lab), timeout=300)
            for lab in ("mnist",)] + [
        # the first run lasts longer than the second one's start-up (a few seconds), so they overlap
        Case("concurrency", "a run and an --overwrite run into one --out",
             runner=two("function-fitting", ("--overwrite",), ("--epochs", "20000")), timeout=300)]


def ddp_cases(fx: dict[str, Path]) -> list[Case]:
    def torchrun(lab: str) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "labkit",
                "run", lab, "--smoke", "--epochs", "1", "--no-tensorboard"]

    def sharded(res: Result, folder: Path) -> bool:
        record = metrics(folder)
        shards = record["ddp"]["first_batches"]
        return record["ddp"]["world_size"] == 2 and shards[0]["fingerprint"] != shards[1]["fingerprint"] \
            and record["written_by"]["rank"] == 0

    def stopped_rank(case: Case, folder: Path) -> Result:
        env = base_env(folder.parent.parent)
        cmd = [*torchrun("mnist"), "--epochs", "30", "--ddp-timeout", "15", "--out", str(folder / "out")]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        victim = None
        deadline = time.time() + 60
        while victim is None and time.time() < deadline and proc.poll() is None:
            time.sleep(1)
            ps = subprocess.run(["ps", "-eo", "pid,args"], check=False, capture_output=True, text=True).stdout
            workers = [int(line.split()[0]) for line in ps.splitlines()
                       if "-m labkit run mnist" in line and "torch.distributed.run" not in line]
            if len(workers) == 2 and (folder / "out" / "checkpoints").is_dir():
                victim = max(workers)
        if victim is None:
            os.killpg(proc.pid, signal.SIGKILL)
            return Result(None, "", "", 0, ("traceback", "[pass] could not find the two ranks"))
        os.kill(victim, signal.SIGSTOP)
        try:
            out, err = proc.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return Result(None, "", "", 150)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        seconds = time.perf_counter() - start
        said = [line for line in err.splitlines() if "labkit: error:" in line]
        if said:
            return Result(proc.returncode, out, err, seconds, ("clear error", said[0][:160]))
        return Result(proc.returncode, out, err, seconds, ("silent wrong" if proc.returncode == 0 else "traceback",
                      f"exit {proc.returncode} with no labkit message about the stopped process"))

    cases = [Case("ddp", f"torchrun 2 procs: {lab}", cmd=lambda f, lab=lab: [*torchrun(lab), "--out", str(f / "out")],
                  check=sharded, timeout=240) for lab in ("mnist", "function-fitting")]
    cases.append(Case("ddp", "a SIGSTOPped rank with --ddp-timeout 15", runner=stopped_rank, timeout=240))
    return cases


EVIL_MARK = "/tmp/labkit-fault-pass-evil-ran"


class Evil:
    """Unpickling this runs a shell command (the malicious-checkpoint case): weights_only must refuse it."""

    def __reduce__(self):
        return (os.system, (f"touch {EVIL_MARK}",))


# --- families: generated cases (options x files x users x timing) ---------------------------------
#
# The cases above are today's list; the families below generate their cases from the labs' own config
# fields, the commands that write files, the environment folders and the two kinds of user, so a new
# option, lab or command is tried without anyone adding a case. `--quick` keeps, of each family's
# product, a covering subset (every value of every axis at least once) plus the cases the issue named.

STUDENT = "labkitfault"


def ensure_student() -> tuple[int, int]:
    """The unprivileged user's (uid, gid), created with `useradd -m` when absent (root only)."""
    import pwd

    try:
        entry = pwd.getpwnam(STUDENT)
    except KeyError:
        subprocess.run(["useradd", "-m", STUDENT], check=True, capture_output=True)
        entry = pwd.getpwnam(STUDENT)
    return entry.pw_uid, entry.pw_gid


def as_student(cmd: list[str]) -> list[str]:
    """`cmd` as the unprivileged user, in exactly this environment (setpriv keeps it; runuser resets HOME)."""
    if os.geteuid() != 0:
        return cmd  # the pass already runs as an ordinary user
    uid, gid = ensure_student()
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--", *cmd]


def give_to_student(folder: Path) -> None:
    """The case folder belongs to the student (its modes, e.g. a read-only copy, stay as the setup made them)."""
    if os.geteuid() != 0:
        return
    uid, gid = ensure_student()
    for p in [folder, *folder.rglob("*")]:
        with contextlib.suppress(OSError):
            os.lchown(p, uid, gid)
    for parent in folder.parents:  # the student must reach the folder
        with contextlib.suppress(OSError):
            parent.chmod(parent.stat().st_mode | 0o011)


def snapshot(paths: list[Path]) -> dict[str, str]:
    """path -> sha256 (or 'link:<target>' / 'dir') of every file under `paths`, links not followed."""
    import hashlib

    out: dict[str, str] = {}
    for root in paths:
        items = [root, *root.rglob("*")] if root.is_dir() and not root.is_symlink() else [root]
        for p in items:
            if p.is_symlink():
                out[str(p)] = f"link:{os.readlink(p)}"
            elif p.is_dir():
                out[str(p)] = "dir"
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _in_read_only(entry: str) -> bool:
    """Whether the file an entry of `changed_files` names lies in a folder without write permission."""
    path = Path(entry.rsplit(" (", 1)[0])
    return any(parent.exists() and not parent.stat().st_mode & 0o222 for parent in list(path.parents)[:4])


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    gone = [f"{p} (removed)" for p in before if p not in after]
    edited = [f"{p} (changed)" for p in before if p in after and after[p] != before[p]]
    added = [f"{p} (written)" for p in after if p not in before]
    return gone + edited + added


def cover(axes: list[list[Any]], quick: bool, must: list[tuple] = ()) -> list[tuple]:
    """The product of `axes`; in quick mode a covering subset: row i takes value i mod len of each axis
    (so each value of each axis appears), plus `must`."""
    import itertools

    if not quick:
        return list(itertools.product(*axes))
    n = max(len(a) for a in axes)
    rows = [tuple(a[i % len(a)] for a in axes) for i in range(n)]
    return rows + [m for m in must if m not in rows]


@dataclass
class Ctx:
    fx: dict[str, Path]
    quick: bool
    users: tuple[str, ...]


RESUME_LABS = ("function-fitting", "mnist", "tiny-imagenet", "lm")
#: options that place a run or pick a machine, not what it trains: not part of the resume family
NOT_TRAINING = {"device", "data", "out", "tensorboard", "sync_bn", "ddp_timeout", "download", "checkpoint_minutes",
                "time_budget", "compile", "pretrained"}
#: options that shape the model: a resume must refuse them by naming the option (drop it), not rebuild
SHAPING = {"model", "width", "arch", "depth", "hidden", "emsize", "nhid", "nlayers", "nhead", "adaptive", "cutoffs",
           "tied", "batch_norm", "residual", "dropout", "function"}
FRACTIONS = {"momentum", "pct_start", "dropout", "valid_fraction", "val_fraction", "label_smoothing", "noise",
             "gamma", "final_lr_fraction"}
QUICK_OPTIONS = ("epochs", "lr", "optimizer", "batch_size", "weight_decay", "width", "emsize", "hidden", "recipe",
                 "val_split")


def other_value(f: Any, annotation: Any, current: Any) -> str | None:
    """A command-line value for field `f` other than `current` (None: the family skips the field)."""
    from labkit.cli import _base_type

    kind, is_tuple = _base_type(annotation)
    choices = f.metadata.get("choices")
    if is_tuple:
        return None
    if kind is bool:
        return "no" if current else "yes"
    if choices:
        return next((c for c in choices if c != current), None)
    if kind is int:
        return str((current or 1) + 1)
    if kind is float:
        if f.name in FRACTIONS:  # stays a valid fraction
            return repr(round(current / 2, 6) if current else 0.1)
        return repr(round((current or 0.05) * 2, 6))
    return None


def _param_groups(path: Path) -> list[dict[str, Any]]:
    from labkit.checkpoint import load_checkpoint

    return list((load_checkpoint(path).payload.get("optimizer") or {}).get("param_groups") or [])


def optimizer_kind(groups: list[dict[str, Any]]) -> str:
    keys = set(groups[0]) if groups else set()
    if "nesterov" in keys and "betas" not in keys:
        return "sgd"
    if "momentum_decay" in keys:
        return "nadam"
    if "betas" in keys:
        return "adamw" if groups[0].get("decoupled_weight_decay", True) else "adam"
    return "?"


def resume_effect(name: str, value: Any, out: Path, record: dict[str, Any]) -> str:
    """'' when option `name` = `value` given with --resume took effect in the run written to `out`,
    else what the files show instead."""
    last = out / "checkpoints" / "last.pt"
    groups = _param_groups(last) if last.is_file() else []
    if name == "epochs":
        done = record["summary"].get("epochs_run")
        return "" if done == value else f"--epochs {value} but epochs_run={done}"
    if name == "lr" and groups:
        peak = groups[0].get("max_lr", groups[0].get("initial_lr"))
        if peak is not None and not math.isclose(peak, value, rel_tol=1e-6):
            return f"--lr {value} recorded but the optimizer's (peak) lr is {peak}"
    if name == "optimizer" and groups:
        kind = optimizer_kind(groups)
        if kind != "?" and kind != value and not {kind, value} <= {"adam", "adamw"}:
            return f"--optimizer {value} recorded but the checkpoint's optimizer is {kind}"
    if name == "weight_decay" and groups:
        decays = {g.get("weight_decay") for g in groups} - {0.0}
        if decays and not any(math.isclose(d, value, rel_tol=1e-6) for d in decays):
            return f"--weight-decay {value} recorded but the optimizer uses {sorted(decays)}"
    if name == "momentum" and groups and "nesterov" in groups[0] \
            and not math.isclose(groups[0]["momentum"], value, rel_tol=1e-6):
        return f"--momentum {value} recorded but SGD uses {groups[0]['momentum']}"
    return ""


def check_run_record(out: Path) -> str:
    """Generic facts of an exit-0 run folder: the chosen epoch is the best epoch the summary reports."""
    record = json.loads((out / "metrics.json").read_text())
    summary, chosen = record.get("summary", {}), record.get("chosen_epoch")
    if "best_epoch" in summary and chosen is not None and summary["best_epoch"] != chosen \
            and (out / "checkpoints" / "best.pt").is_file():
        return f"summary says best at epoch {summary['best_epoch']} but chosen_epoch is {chosen}"
    for key, value in summary.items():
        if isinstance(value, float) and math.isnan(value) and not summary.get("diverged"):
            return f"summary {key} is nan with no divergence reported"
    return ""


def resume_family(ctx: Ctx) -> list[Case]:
    """Every training option of every lab given with --resume (applied, or refused naming the option), at an
    epoch-end and a mid-epoch checkpoint, into a fresh --out and into the run's own folder."""
    from labkit.checkpoint import load_checkpoint
    from labkit.lab import config_fields, get_lab

    cases: list[Case] = []
    for lab_name in RESUME_LABS:
        lab = get_lab(lab_name)
        run_dir = ctx.fx[f"good-{lab_name}"].parent
        saved = load_checkpoint(run_dir / "checkpoints" / "last.pt").config
        options: list[tuple[str, str]] = []
        for f, annotation in config_fields(lab.Config):
            if not f.metadata.get("cli", True) or f.name in lab.unused_options or f.name in NOT_TRAINING:
                continue
            if f.name == "epochs":
                done = int(saved["epochs"])
                options += [("epochs", str(done + 1)), ("epochs", "1")]
                continue
            value = other_value(f, annotation, saved.get(f.name))
            if value is not None:
                options.append((f.name, value))
        options += [("recipe", r) for r in list(lab.recipes)[1:2 if ctx.quick else None]]
        if ctx.quick:
            options = [o for o in options if o[0] in QUICK_OPTIONS]
        timings = ["epoch end", "mid-epoch"] if f"mid-{lab_name}" in ctx.fx else ["epoch end"]
        places = ["fresh --out", "own folder"]
        must = [(o, "mid-epoch", "fresh --out") for o in options if o[0] in ("batch_size", "optimizer")] \
            if "mid-epoch" in timings else []
        for option, timing, place in cover([options, timings, places], ctx.quick, must):
            cases.append(_resume_case(lab_name, option, timing, place, ctx.fx, saved))
    return cases


def _resume_case(lab_name: str, option: tuple[str, str], timing: str, place: str, fx: dict[str, Path],
                 saved: dict[str, Any]) -> Case:
    name, value = option
    flag = "--" + name.replace("_", "-")
    given = [f"--{'no-' if value == 'no' else ''}{name.replace('_', '-')}"] if value in ("yes", "no") \
        else [flag, value]
    source = fx[f"mid-{lab_name}" if timing == "mid-epoch" else f"good-{lab_name}"].parent

    def setup(folder: Path) -> None:
        copy_run(source, folder, "run")

    def argv(folder: Path) -> list[str]:
        extra = ["--out", str(folder / "out")] if place == "fresh --out" else []
        return ["run", lab_name, "--resume", str(folder / "run" / "checkpoints" / "last.pt"), *given, *extra]

    def check(res: Result, folder: Path) -> bool:
        out = folder / ("out" if place == "fresh --out" else "run")
        last, original = out / "checkpoints" / "last.pt", folder / "orig" / "checkpoints" / "last.pt"
        if place == "own folder" and last.read_bytes() == original.read_bytes():
            raise AssertionError("exit 0 but the resumed run wrote nothing into the folder it was resumed from")
        record = json.loads((out / "metrics.json").read_text())
        recorded = record["config"].get(name) if name != "recipe" else record["config"].get("recipe")
        want: Any = {"yes": True, "no": False}.get(value, value)
        if isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
            want = type(recorded)(float(value))
        if name == "epochs" and int(value) <= int(saved["epochs"]):
            raise AssertionError(f"--epochs {value} after {saved['epochs']} done: exit 0 (nothing to train) "
                                 f"instead of an error; metrics say epochs={recorded}")
        if recorded != want:
            raise AssertionError(f"metrics.json config {name}={recorded!r}, given {value}")
        if name == "recipe":
            fresh = get_lab_config(lab_name, saved.get("size", "smoke"), value)
            differ = {k: v for k, v in fresh.items() if saved.get(k) != v and k in ("lr", "optimizer", "schedule")}
            for key, v in differ.items():
                why = resume_effect(key, v, out, record)
                if why:
                    raise AssertionError(f"--recipe {value} recorded but {why}")
        else:
            why = resume_effect(name, want, out, record)
            if why:
                raise AssertionError(why)
        why = check_run_record(out)
        if why:
            raise AssertionError(why)
        return True

    advice: tuple[str, ...] = (flag,) if name != "recipe" else ("--recipe",)
    misadvice = ("Build the same architecture",) if name in SHAPING else ()
    return Case("resume-options", f"{lab_name} --resume ({timing}, {place}) {' '.join(given)}", setup=setup,
                argv=argv, check=check, advice=advice, misadvice=misadvice, timeout=180,
                protect=(lambda f: [f / "orig", f / "run" / "checkpoints"]) if place == "fresh --out"
                else (lambda f: [f / "orig"]))


def copy_run(source: Path, folder: Path, name: str) -> Path:
    """`folder/orig` (the original run) and `folder/<name>` (the student's copy of it), both copies of the
    fixture run `source` whose checkpoints record `folder/orig` as their run folder, so a command that
    writes into the folder recorded in a checkpoint writes into `orig` (protected), never the fixture."""
    import torch

    orig = copy_tree(source, folder / "orig")
    for ck in (orig / "checkpoints").glob("*.pt"):
        data = torch.load(ck, weights_only=True)
        if isinstance(data.get("config"), dict) and "out" in data["config"]:
            data["config"]["out"] = str(orig)
            torch.save(data, ck)
    return orig if name == "orig" else copy_tree(orig, folder / name)


def get_lab_config(lab_name: str, size: str, recipe: str) -> dict[str, Any]:
    from labkit.lab import get_lab

    return get_lab(lab_name).config(size, recipe=recipe).to_dict()


def resume_place_family(ctx: Ctx) -> list[Case]:
    """Where a resumed run writes: a copied run folder (not the original recorded in the checkpoint), and
    --out folders that hold another run, are the source run, are a file or lie under a file."""
    cases: list[Case] = []
    targets = ["a copy of the run (no --out)", "--out holds another run", "--out is the source run",
               "--out is a file", "--out under a file"]
    for lab_name, target in cover([list(RESUME_LABS), targets], ctx.quick,
                                  must=[("mnist", t) for t in targets]):
        cases.append(_resume_place_case(lab_name, target, ctx.fx))
    return cases


def _resume_place_case(lab_name: str, target: str, fx: dict[str, Path]) -> Case:
    import torch

    from labkit.checkpoint import load_checkpoint

    source = fx[f"good-{lab_name}"].parent
    done = int(load_checkpoint(source / "checkpoints" / "last.pt").config["epochs"])
    # a schedule planned for `done` epochs cannot be extended: continue its epoch-1 checkpoint instead
    mid = (source / "checkpoints" / "epoch_001.pt").is_file()
    ckpt_name, epochs = ("epoch_001.pt", done) if mid else ("last.pt", done + 1)

    def setup(folder: Path) -> None:
        copy_run(source, folder, "orig").rename(folder / "runA")
        for ck in (folder / "runA" / "checkpoints").glob("*.pt"):  # runA records itself as its folder
            data = torch.load(ck, weights_only=True)
            data["config"]["out"] = str(folder / "runA")
            torch.save(data, ck)
        if target == "a copy of the run (no --out)":
            copy_tree(folder / "runA", folder / "mycopy")
        elif target == "--out holds another run":
            copy_run(source, folder, "orig").rename(folder / "runB")
        elif target in ("--out is a file", "--out under a file"):
            (folder / "afile").write_text("a file")

    def argv(folder: Path) -> list[str]:
        if target == "a copy of the run (no --out)":
            return ["run", lab_name, "--resume", str(folder / "mycopy" / "checkpoints" / ckpt_name),
                    "--epochs", str(epochs)]
        out = {"--out holds another run": folder / "runB", "--out is the source run": folder / "runA",
               "--out is a file": folder / "afile", "--out under a file": folder / "afile" / "out"}[target]
        return ["run", lab_name, "--resume", str(folder / "runA" / "checkpoints" / ckpt_name), "--epochs",
                str(epochs), "--out", str(out)]

    def protect(folder: Path) -> list[Path]:
        if target == "a copy of the run (no --out)":
            return [folder / "runA"]
        if target == "--out holds another run":
            return [folder / "runA" / "checkpoints", folder / "runB" / "checkpoints"]
        if target == "--out is the source run":
            return []  # continuing a run in its own folder is the normal case
        return [folder / "runA" / "checkpoints", folder / "afile"]

    def check(res: Result, folder: Path) -> bool:
        if target == "a copy of the run (no --out)":
            record = json.loads((folder / "mycopy" / "metrics.json").read_text())
            if record["summary"]["epochs_run"] != epochs:
                raise AssertionError(f"the copy's metrics.json shows epochs_run={record['summary']['epochs_run']}")
        elif target == "--out holds another run":
            raise AssertionError("exit 0: the other run in --out was replaced without --overwrite")
        return True

    return Case("resume-place", f"{lab_name} --resume with {target}", setup=setup, argv=argv, check=check,
                protect=protect, timeout=180)


def output_family(ctx: Ctx) -> list[Case]:
    """Every command that writes a file x a target it must not write over (its own input, a checkpoint, a
    symlink into the sources) or cannot write (a read-only folder, a folder under a file), for each user."""
    commands = ["export", "run --out", "release --out"]
    targets = ["its own input", "a labkit checkpoint", "a symlink into the sources", "a read-only folder",
               "a folder under a file"]
    must = [("export", "its own input", "root"), ("export", "a labkit checkpoint", "root"),
            ("release --out", "a symlink into the sources", "root")]
    return [_output_case(command, target, user, ctx.fx)
            for command, target, user in cover([commands, targets, list(ctx.users)], ctx.quick, must)]


def _output_case(command: str, target: str, user: str, fx: dict[str, Path]) -> Case:
    source_run = fx["good-mnist"].parent

    def setup(folder: Path) -> None:
        copy_tree(source_run, folder / "runA")
        copy_tree(fx["good-lm"].parent, folder / "other")
        copy_tree(ROOT / "labs", folder / "labs")
        if target == "a symlink into the sources":
            site = folder / "site"
            site.mkdir()
            if command == "release --out":
                for src in (folder / "labs").iterdir():
                    (site / src.name).symlink_to(src)
            elif command == "export":
                (site / "hw.pth").symlink_to(folder / "labs" / next(p.name for p in (folder / "labs").glob("*.py")))
            else:
                (site / "checkpoints").symlink_to(folder / "other" / "checkpoints")
        elif target == "a read-only folder":
            (folder / "ro").mkdir()
            (folder / "ro").chmod(0o555)
        elif target == "a folder under a file":
            (folder / "afile").write_text("a file")

    def dest(folder: Path) -> Path:
        own_input = {"export": folder / "runA" / "checkpoints" / "best.pt", "run --out": folder / "runA",
                     "release --out": folder / "labs"}
        return {"its own input": own_input[command],
                "a labkit checkpoint": folder / "other" / "checkpoints" / ("best.pt" if command == "export" else ""),
                "a symlink into the sources": folder / "site" / ("hw.pth" if command == "export" else ""),
                "a read-only folder": folder / "ro" / "x",
                "a folder under a file": folder / "afile" / "x"}[target]

    def argv(folder: Path) -> list[str]:
        out = str(dest(folder)).rstrip("/")
        if command == "export":
            return ["export", str(folder / "runA" / "checkpoints" / "best.pt"), out]
        if command == "run --out":
            return ["run", "function-fitting", "--smoke", "--no-tensorboard", "--out", out]
        return ["release", "--labs", str(folder / "labs"), "--out", out]

    def protect(folder: Path) -> list[Path]:
        keep = [folder / "runA" / "checkpoints", folder / "other" / "checkpoints", folder / "labs", folder / "afile"]
        if command == "run --out" and target == "its own input":
            keep = keep[1:]  # the run's own folder without --overwrite: refused, checked by the keep list
        return [p for p in keep if p.exists()]

    def check(res: Result, folder: Path) -> bool:
        if target in ("its own input", "a labkit checkpoint") and command != "run --out":
            raise AssertionError(f"exit 0 writing over {target}")
        return True

    keep = ("runA/checkpoints/best.pt", "runA/checkpoints/last.pt") if command == "run --out" else ()
    return Case("output-targets", f"{command} onto {target} ({user})", setup=setup, argv=argv, protect=protect,
                check=check, user=user, keep=keep, timeout=180)


ENV_FOLDERS = ("LABKIT_DATA", "LABKIT_CACHE", "LABKIT_RUNS", "HOME")
ENV_STATES = ("read-only", "missing", "unset", "a file")
ENV_COMMANDS = ("run tiny-imagenet --smoke", "run lm --smoke", "run mnist --smoke", "compare", "smoke function-fitting")


def env_family(ctx: Ctx) -> list[Case]:
    """Every environment folder x read-only / missing / unset / a file x each user x the commands that use it."""
    must = [("LABKIT_DATA", "read-only", "root", "run tiny-imagenet --smoke"),
            ("LABKIT_DATA", "read-only", "root", "run lm --smoke"),
            ("LABKIT_DATA", "read-only", "student", "run tiny-imagenet --smoke"),
            ("LABKIT_RUNS", "read-only", "student", "compare"),
            ("LABKIT_RUNS", "read-only", "student", "smoke function-fitting"),
            ("HOME", "unset", "root", "run tiny-imagenet --smoke")]
    rows = cover([list(ENV_FOLDERS), list(ENV_STATES), list(ctx.users), list(ENV_COMMANDS)], ctx.quick,
                 [m for m in must if m[2] in ctx.users])
    return [_env_case(*row, ctx.fx) for row in rows]


def _env_case(var: str, state: str, user: str, command: str, fx: dict[str, Path]) -> Case:
    def setup(folder: Path) -> None:
        target = folder / "envdir"
        if var == "LABKIT_DATA" and state in ("read-only",):
            copy_tree(fx["tiny"], target / "tiny-imagenet-200")
            copy_tree(fx["wikitext"], target / "wikitext-2")
        if state == "read-only":
            target.mkdir(exist_ok=True)
            for p in [target, *target.rglob("*")]:
                p.chmod(0o555 if p.is_dir() else 0o444)
        elif state == "a file":
            target.write_text("a file")

    env: dict[str, str | None] = {}
    if state == "unset":
        env[var] = None
        if var == "LABKIT_DATA":
            env["HOME"] = None  # no HOME and no LABKIT_DATA
    elif state == "missing":
        env[var] = "{folder}/envdir/nowhere"
    else:
        env[var] = "{folder}/envdir"
    if var == "LABKIT_DATA" and state == "read-only":
        env["LABKIT_CACHE"] = None if user == "root" else "{folder}/cache"

    def argv(folder: Path) -> list[str]:
        out = ["--out", str(folder / "out")]
        if command == "compare":
            ckpt = fx["good-tiny-imagenet"] / "best.pt"
            return ["compare", str(ckpt), str(ckpt)]
        if command.startswith("smoke"):
            return ["smoke", "function-fitting"] if var == "LABKIT_RUNS" else ["smoke", "function-fitting", *out]
        return [*command.split(), "--epochs", "1", "--no-tensorboard", *out]

    def protect(folder: Path) -> list[Path]:
        return [folder / "envdir"] if state in ("read-only", "a file") else []

    return Case("env-folders", f"{var} {state}, {user}: labkit {command}", setup=setup, env=env, argv=argv,
                protect=protect, user=user, check=lambda r, f: True, timeout=240)


def timing_family(ctx: Ctx) -> list[Case]:
    """Runs that stop early at every point: divergence after an epoch, a time budget that ends before or
    within the first step, for every lab; the report and figures must still come out."""
    from labkit.lab import lab_names

    stops = [("--lr", "1e3"), ("--lr", "1e6"), ("--time-budget", "0.001"), ("--time-budget", "1e-9")]
    rows = cover([lab_names(), stops], ctx.quick, must=[("cifar10", ("--lr", "1e3")),
                                                        ("mnist", ("--time-budget", "0.001"))])

    def check(res: Result, folder: Path, budget: bool) -> bool:
        why = check_run_record(folder / "out")
        text = res.out + res.err
        if budget and not any(w in text for w in ("time budget", "stopped", "resume with --resume")):
            why = why or "exit 0 without saying the time budget stopped the run"
        if why:
            raise AssertionError(why)
        return True

    return [Case("timing", f"{lab} --smoke {flag} {value}", argv=smoke(lab, flag, value, "--epochs", "3"),
                 check=lambda r, f, budget=flag == "--time-budget": check(r, f, budget), timeout=180)
            for lab, (flag, value) in rows]


def _idx_empty(path: Path) -> None:
    """An IDX file (plain and .gz) that says it holds 0 items and holds none."""
    import gzip

    for p in (path, path.with_name(path.name + ".gz")):
        if not p.exists():
            continue
        raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
        dims = raw[3]
        header = raw[:4] + (0).to_bytes(4, "big") + raw[8:4 + 4 * dims]
        p.write_bytes(gzip.compress(header) if p.suffix == ".gz" else header)


def data_family(ctx: Ctx) -> list[Case]:
    """Every file of every generated data set x the ways it can be empty, blank or odd that the loaders
    might pass on as numbers (nan accuracy, a resized image, a wrong split), and options that make a
    split or checkpoint meaningless."""
    cases: list[Case] = []
    mnist_files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                   "t10k-labels-idx1-ubyte"]
    for name in (mnist_files if not ctx.quick else mnist_files[2:3] + mnist_files[:1]):
        def setup(folder: Path, name: str = name) -> None:
            raw = next(copy_tree(ctx.fx["mnist"], folder / "data").rglob("raw"))
            _idx_empty(raw / name)
        cases.append(Case("data-content", f"mnist: {name} holds 0 items", setup=setup,
                          check=lambda r, f: not (why := check_run_record(f / "out")) or _fail(why),
                          advice=(name.split("-")[0],), argv=lambda f: ["run", "mnist", "--smoke", "--data",
                                                                       str(f / "data"), "--epochs", "1", "--out",
                                                                       str(f / "out"), "--no-tensorboard"]))
    lm_breaks = {"empty": "", "blank lines only": "\n\n \n\n", "one word": "the\n"}
    rows = cover([["train.txt", "valid.txt", "test.txt"], list(lm_breaks)], ctx.quick,
                 must=[("valid.txt", "blank lines only")])
    for fname, how in rows:
        def setup(folder: Path, fname: str = fname, how: str = how) -> None:
            root = copy_tree(ctx.fx["wikitext"], folder / "data")
            (next(root.rglob("train.txt")).parent / fname).write_text(lm_breaks[how])
        cases.append(Case("data-content", f"lm: {fname} {how}", setup=setup, advice=(fname,),
                          misadvice=("smaller batch",) if fname != "train.txt" else (),
                          check=lambda r, f: not (why := check_run_record(f / "out")) or _fail(why),
                          argv=lambda f: ["run", "lm", "--smoke", "--data", str(f / "data"), "--epochs", "1",
                                          "--out", str(f / "out"), "--no-tensorboard"]))
    for split in ("test",) if ctx.quick else ("test", "train"):
        cases.append(Case("data-content", f"lm --val-split {split}", argv=smoke("lm", "--val-split", split),
                          check=lambda r, f, split=split: "val-split" in r.out + r.err or _fail(
                              f"validation on the {split} split without a word: the chosen checkpoint is "
                              f"picked on the data it reports")))

    def odd_jpeg(folder: Path) -> None:
        from PIL import Image

        root = copy_tree(ctx.fx["tiny"], folder / "data")
        victim = min(root.glob("train/*/images/*.JPEG"))
        Image.new("RGB", (500, 375), (120, 30, 200)).save(victim, format="JPEG")

    cases.append(Case("data-content", "tiny: a 500x375 JPEG in train/", setup=odd_jpeg,
                      check=lambda r, f: any(w in r.out + r.err for w in ("500", "resiz", "64x64")) or _fail(
                          "exit 0 with the odd-size image resized without a word"),
                      argv=lambda f: ["run", "tiny-imagenet", "--smoke", "--data", str(f / "data"), "--epochs", "1",
                                      "--out", str(f / "out"), "--no-tensorboard"]))

    def other_classes(folder: Path) -> None:
        from labkit.labs.tiny_imagenet.data import write_synthetic_tiny_imagenet

        # as many classes as the checkpoint predicts (10, the smoke data's), other ones
        write_synthetic_tiny_imagenet(folder / "other", n_classes=10, n_train_per_class=4, n_val_per_class=2, seed=7)
        copy_run(ctx.fx["good-tiny-imagenet"].parent, folder, "run")

    def same_classes(res: Result, folder: Path) -> bool:
        saved = next((ctx.fx["work"] / "data").rglob("wnids.txt")).read_text().split()  # the fixture run's data
        given = (folder / "other" / "tiny-imagenet-200" / "wnids.txt").read_text().split()
        return sorted(saved) == sorted(given) or _fail(f"resumed on other classes {sorted(given)[:2]}... "
                                                       f"than the checkpoint's {sorted(saved)[:2]}...")

    for how in ("--evaluate", "continue from epoch_001.pt"):
        def argv(f: Path, how: str = how) -> list[str]:
            ck = f / "run" / "checkpoints"
            given = ["--evaluate"] if how == "--evaluate" else ["--epochs", "2", "--out", str(f / "out")]
            return ["run", "tiny-imagenet", "--resume", str(ck / ("best.pt" if how == "--evaluate" else
                                                                   "epoch_001.pt")),
                    *given, "--data", str(f / "other" / "tiny-imagenet-200")]
        cases.append(Case("data-content", f"tiny --resume ({how}) with --data of other classes", setup=other_classes,
                          check=same_classes, advice=("--data",), argv=argv, protect=lambda f: [f / "orig"]))
    for lab in ("mnist", "tiny-imagenet", "cifar10", "lm") if not ctx.quick else ("mnist", "lm"):
        cases.append(Case("data-content", f"{lab} --at-epochs 5 --epochs 1",
                          argv=smoke(lab, "--at-epochs", "5", "--epochs", "1"), advice=("--at-epochs",),
                          check=lambda r, f: "at-epochs" in r.out + r.err or _fail(
                              "no epoch_005.pt can be written and nothing says so")))
    return cases


def _fail(why: str) -> bool:
    raise AssertionError(why)


def _flip_tensor_byte(path: Path) -> None:
    """Flip one byte in the middle of the largest tensor stored in a zip checkpoint."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len = int.from_bytes(raw[info.header_offset + 26: info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28: info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.file_size // 2 + 1] ^= 0x40  # an exponent bit of a float32: the weight changes a lot
    path.write_bytes(bytes(raw))


def _int8_weights(path: Path) -> None:
    import torch

    data = torch.load(path, weights_only=True)
    data["model"] = {k: v.to(torch.int8) if v.is_floating_point() else v for k, v in data["model"].items()}
    torch.save(data, path)


def checkpoint_family(ctx: Ctx) -> list[Case]:
    """Checkpoints verified beyond their keys and shapes: every lab's checkpoint x a flipped byte inside a
    tensor, weights cast to int8, a symlink loop x every command that reads a checkpoint."""
    breaks = {"a flipped byte inside a tensor": _flip_tensor_byte, "weights cast to int8": _int8_weights,
              "a symlink loop": None}
    commands = ["continue (--resume)", "export", "--out listing"]
    rows = cover([list(RESUME_LABS), list(breaks), commands], ctx.quick,
                 must=[("tiny-imagenet", "a flipped byte inside a tensor", "continue (--resume)"),
                       ("tiny-imagenet", "weights cast to int8", "continue (--resume)"),
                       ("mnist", "a symlink loop", "--out listing")])
    cases = []
    for lab, how, command in rows:
        from labkit.checkpoint import load_checkpoint

        done = int(load_checkpoint(ctx.fx[f"good-{lab}"] / "last.pt").config["epochs"])

        def setup(folder: Path, lab: str = lab, how: str = how) -> None:
            ck = copy_run(ctx.fx[f"good-{lab}"].parent, folder, "run") / "checkpoints"
            for target in [ck / n for n in ("best.pt", "last.pt") if (ck / n).is_file()]:
                if breaks[how] is None:
                    target.unlink()
                    target.symlink_to(target)
                else:
                    breaks[how](target)

        def argv(folder: Path, lab: str = lab, command: str = command, done: int = done) -> list[str]:
            ck = folder / "run" / "checkpoints"
            if command == "export":
                best = ck / "best.pt"
                chosen = best if best.exists() or best.is_symlink() else ck / "last.pt"
                return ["export", str(chosen), str(folder / "hw.pth")]
            if command == "--out listing":
                return ["run", lab, "--smoke", "--epochs", "1", "--out", str(folder / "run"), "--no-tensorboard"]
            if lab == "tiny-imagenet":
                return ["run", lab, "--resume", str(ck / "best.pt"), "--evaluate"]
            return ["run", lab, "--resume", str(ck / "last.pt"), "--epochs", str(done + 1), "--out",
                    str(folder / "out")]

        loop = breaks[how] is None
        listing = loop and command == "--out listing"
        cases.append(Case(
            "checkpoint-bytes", f"{lab}: {how}, {command}", setup=setup, argv=argv, protect=lambda f: [f / "orig"],
            # a looping link is no checkpoint: a run into its folder may replace it, saying so, or refuse for the
            # folder's real checkpoints; listing the link among them is the wrong advice
            check=(lambda r, f: "link" in (r.out + r.err).lower() or _fail("exit 0 without a word about the link"))
            if listing else (lambda r, f, how=how: _fail(f"exit 0 with {how}")),
            advice=("link",) if loop and not listing else (),
            misadvice=("checkpoints (best.pt", "(last.pt", ", last.pt") if listing else ()))
    return cases


API_CASES = ("optimizer over another model", "grad_clip=-1.0", "TrainingPanel(epochs=0)", "TrainingPanel(lr=5)",
             "a meta-device model", "a float64 model", "one-hot float targets with accuracy", "NaN inputs")


def api_family(ctx: Ctx) -> list[Case]:
    """The library from Python, as a notebook calls it: each call with an argument that cannot work."""
    return [Case("python-api", name, cmd=[sys.executable, str(Path(__file__).resolve()), "--api-case", name],
                 timeout=120, runner=_api_runner) for name in API_CASES]


def _api_runner(case: Case, folder: Path) -> Result:
    res = run_process(case.cmd, base_env(folder.parent.parent), case.timeout, folder)
    line = next((ln for ln in res.out.splitlines() if ln.startswith("VERDICT ")), None)
    if line is not None:
        outcome, _, why = line[len("VERDICT "):].partition("|")
        res.verdict = (outcome, why)
    elif res.rc is not None:
        res.verdict = ("traceback", f"exit {res.rc}: {res.err.strip()[-160:]}")
    return res


def api_worker(name: str) -> None:
    """One Python-API case; prints `VERDICT outcome|why`."""
    import warnings

    import torch
    from torch import nn

    from labkit.callbacks import Progress
    from labkit.engine import fit
    from labkit.errors import LabkitError

    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    kwargs: dict[str, Any] = {"epochs": 2, "loss_fn": nn.CrossEntropyLoss(), "callbacks": [Progress(False)]}

    def batches(x: Any = x, y: Any = y) -> list[tuple[Any, Any]]:
        return [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), warnings.catch_warnings(record=True) \
                as caught:
            warnings.simplefilter("always")
            verdict = _api_call(name, fit, batches, kwargs, nn, torch)
        said = out.getvalue() + " ".join(str(w.message) for w in caught)
        if name == "NaN inputs" and "lower the learning rate" in said.lower():
            verdict = ("wrong advice", f"NaN in the inputs answered with: {said.strip()[-140:]}")
        elif verdict[0] != "handled" and said.strip():
            verdict = (verdict[0], f"{verdict[1]}; it said: {said.strip()[-100:]}")
    except LabkitError as err:
        text = str(err)
        verdict = ("clear error", text[:160])
        if name == "NaN inputs" and "lower the learning rate" in text.lower():
            verdict = ("wrong advice", f"NaN in the inputs, advice: {text[:140]}")
    except (ValueError, TypeError) as err:  # raised on purpose with a message by the library's own checks
        tb = traceback.extract_tb(err.__traceback__)
        own = tb and "labkit" in tb[-1].filename and "raise" in (tb[-1].line or "")
        verdict = ("clear error" if own else "traceback", f"{type(err).__name__}: {str(err)[:150]}")
    except Exception as err:  # noqa: BLE001
        verdict = ("traceback", f"{type(err).__name__}: {str(err)[:150]}")
    print(f"VERDICT {verdict[0]}|{verdict[1]}")


def _api_call(name: str, fit: Any, batches: Any, kwargs: dict[str, Any], nn: Any, torch: Any) -> tuple[str, str]:
    if name == "optimizer over another model":
        model, other = nn.Linear(4, 3), nn.Linear(4, 3)
        before = [p.detach().clone() for p in model.parameters()]
        fit(model, batches(), optimizer=torch.optim.SGD(other.parameters(), lr=0.1), **kwargs)
        same = all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
        return ("silent wrong", "fit returned; the model's weights never changed") if same else ("handled", "")
    if name == "grad_clip=-1.0":
        model = nn.Linear(4, 3)
        fit(model, batches(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), grad_clip=-1.0, **kwargs)
        return "silent wrong", "fit(grad_clip=-1.0) trained without a word"
    if name.startswith("TrainingPanel"):
        from labkit.widgets import TrainingPanel

        epochs, lr = (0, 0.01) if "epochs" in name else (3, 5.0)
        TrainingPanel(lambda e, lr_, plot: None, epochs=epochs, lr=lr)
        return "silent wrong", f"TrainingPanel(epochs={epochs}, lr={lr}) built without a word"
    if name == "a meta-device model":
        model = nn.Linear(4, 3, device="meta")
        fit(model, batches(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)
        return "silent wrong", "fit on a meta-device model returned"
    if name == "a float64 model":
        model = nn.Linear(4, 3).double()
        history = fit(model, batches(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)
        ok = len(history) == 2
        return ("handled", "") if ok else ("silent wrong", f"{len(history)} epochs recorded")
    if name == "one-hot float targets with accuracy":
        x = torch.randn(64, 4)
        y = torch.nn.functional.one_hot(torch.randint(0, 3, (64,)), 3).float()
        model = nn.Linear(4, 3)
        history = fit(model, batches(x, y), optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                      metrics=["accuracy"], eval_data=batches(x, y), **kwargs)
        acc = history.last("val_accuracy") if "val_accuracy" in history else None
        ok = acc is not None and 0.0 <= acc <= 1.0
        return ("handled", "") if ok else ("silent wrong", f"val_accuracy {acc}")
    if name == "NaN inputs":
        x = torch.randn(64, 4)
        x[5, 2] = float("nan")
        model = nn.Linear(4, 3)
        history = fit(model, batches(x), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)
        reason = history.stop_reason or ""
        if history.diverged and "nan" in reason.lower() and "lower the learning rate" not in reason.lower():
            return "handled", "stopped, blaming the data's NaN values, not the learning rate"  # fit's contract
        return "silent wrong", f"fit returned on NaN inputs: diverged={history.diverged}, reason {reason[:80]!r}"
    raise SystemExit(f"unknown api case {name}")


def cache_family(ctx: Ctx) -> list[Case]:
    """The decode cache under LABKIT_CACHE x an orphan temp file of a killed build, the cache truncated at
    rest, truncated while memory-mapped (timing), a full disk, x each user."""
    states = ["an orphan temp file", "truncated at rest", "truncated while mapped", "a full disk"]
    rows = cover([states, list(ctx.users)], ctx.quick)
    return [_cache_case(state, user, ctx) for state, user in rows]


def _cache_case(state: str, user: str, ctx: Ctx) -> Case:
    built = sorted((ctx.fx["work"] / "cache").glob("tiny-imagenet-*.pt"))
    orphan = ".tiny-imagenet-train-0.pt.tmp-4194001"

    def setup(folder: Path) -> None:
        cache = folder / "cache"
        cache.mkdir(exist_ok=True)
        if state == "an orphan temp file":
            (cache / orphan).write_bytes(b"x" * 4096)
        elif state == "truncated at rest":
            for p in built:
                (cache / p.name).write_bytes(p.read_bytes()[: p.stat().st_size // 2])

    env = {"LABKIT_CACHE": "{folder}/cache"}
    args = ["run", "tiny-imagenet", "--smoke", "--data", str(ctx.fx["tiny"]), "--no-tensorboard"]
    if state == "a full disk":
        program = ("import errno, io, os, sys, labkit.files as f\n"
                   "class Full(io.FileIO):\n"
                   "    def write(self, b):\n"
                   "        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
                   "f.open = lambda p, m='r': Full(p, m.replace('b', ''))\n"
                   "from labkit.cli import main\n"
                   "sys.exit(main(sys.argv[1:]))\n")
        return Case("cache", f"{state} under LABKIT_CACHE ({user})", setup=setup, env=env, user=user,
                    cmd=lambda f: [sys.executable, "-c", program, *args, "--epochs", "1", "--out", str(f / "out")])
    if state == "truncated while mapped":
        return Case("cache", f"cache {state} ({user})", setup=setup, user=user, runner=_truncate_while_mapped(args),
                    timeout=240)
    check = (lambda r, f: not (f / "cache" / orphan).exists() or _fail("the orphan temp file is still there")) \
        if state == "an orphan temp file" else None
    return Case("cache", f"cache: {state} ({user})", setup=setup, env=env, user=user, check=check,
                argv=lambda f: [*args, "--epochs", "1", "--out", str(f / "out")])


def _truncate_while_mapped(args: list[str]) -> Callable[[Case, Path], Result]:
    def go(case: Case, folder: Path) -> Result:
        env = base_env(folder.parent.parent)
        env.update({"LABKIT_CACHE": str(folder / "cache"), "LABKIT_RUNS": str(folder / "runs"), "HOME": str(folder)})
        cmd = labkit_cmd(*args, "--epochs", "40", "--out", str(folder / "out"))
        if case.user == "student":
            cmd = as_student(cmd)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None and not (folder / "out" / "checkpoints").is_dir():
            time.sleep(0.5)
        time.sleep(2)
        for p in (folder / "cache").glob("tiny-imagenet-*.pt"):
            with open(p, "r+b") as handle:  # replaced in place, as a second build or a cleanup would
                handle.truncate(p.stat().st_size // 4)
        try:
            out, err = proc.communicate(timeout=120)
            rc: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return Result(None, out, err, time.perf_counter() - start)
        res = Result(rc, out, err, time.perf_counter() - start)
        if rc is not None and rc < 0:
            res.verdict = ("traceback", f"killed by signal {-rc} ({signal.Signals(-rc).name}) with no message")
        return res
    return go


FAMILIES: dict[str, Callable[[Ctx], list[Case]]] = {
    "resume-options": resume_family, "resume-place": resume_place_family, "output-targets": output_family,
    "env-folders": env_family, "timing": timing_family, "data-content": data_family,
    "checkpoint-bytes": checkpoint_family, "python-api": api_family, "cache": cache_family,
}


# --- the bad-option worker (one process per lab) --------------------------------------------------

def option_cases(lab_name: str) -> list[tuple[str, str, Any]]:
    from labkit.cli import _base_type
    from labkit.lab import config_fields, get_lab

    lab = get_lab(lab_name)
    out = []
    for f, annotation in config_fields(lab.Config):
        if not f.metadata.get("cli", True) or f.name in lab.unused_options:
            continue
        kind, _ = _base_type(annotation)
        if kind not in (int, float):
            continue
        values = BAD_VALUES + (("2.5",) if kind is int else ())
        out += [(f.name, value, kind) for value in values]
    return out


class _Alarm(Exception):
    pass


def options_worker(lab_name: str, folder: Path, timeout: float) -> None:
    """Run every bad value of every numeric option of one lab in this process; print a JSON line each."""
    from labkit.cli import main

    def alarm(signum: int, frame: Any) -> None:
        raise _Alarm

    signal.signal(signal.SIGALRM, alarm)
    for i, (name, value, kind) in enumerate(option_cases(lab_name)):
        flag = "--" + name.replace("_", "-")
        out = folder / f"{lab_name}-{i}"
        argv = ["run", lab_name, "--smoke", "--out", str(out), "--no-tensorboard", flag, value]
        err, stdout = io.StringIO(), io.StringIO()
        start = time.perf_counter()
        outcome, why = "", ""
        signal.alarm(int(timeout))
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
                try:
                    rc = main(argv)
                except SystemExit as exit_:
                    rc = exit_.code if isinstance(exit_.code, int) else 1
        except _Alarm:
            outcome, why = "hang", f"no result within {timeout:.0f} s"
        except BaseException as exc:  # noqa: BLE001
            outcome, why = "traceback", "".join(traceback.format_exception_only(exc)).strip()[:160]
        finally:
            signal.alarm(0)
        text = err.getvalue()
        if not outcome:
            if rc == 0:
                try:
                    record = json.loads((out / "metrics.json").read_text())
                    saved = record["config"][name]
                    want = kind(float(value)) if kind is int else float(value)
                    saved_one = saved[0] if isinstance(saved, list) and saved else saved
                    ok = saved_one == want or (isinstance(want, float) and math.isnan(want) and math.isnan(saved_one))
                    outcome, why = ("handled", "") if ok else ("silent wrong", f"config has {name}={saved!r}")
                    if ok and record["summary"].get("epochs_run", 1) < 1 and name != "time_budget":
                        outcome, why = "silent wrong", "no epoch trained"
                except Exception as exc:  # noqa: BLE001
                    outcome, why = "silent wrong", f"exit 0 but no usable metrics.json ({exc})"
            elif rc in (1, 2) and "labkit: error:" in text:
                outcome = "clear error"
                why = next(line for line in text.splitlines() if "labkit: error:" in line)[:200]
                if name.replace("_", "-") not in why and "--" + name.replace("_", "-") not in text:
                    outcome, why = "silent wrong", f"the message does not name {flag}: {why}"
            else:
                outcome, why = "traceback", f"exit {rc}: {text.strip()[-160:]}"
        print(json.dumps({"category": "options", "name": f"{lab_name} {flag} {value}", "outcome": outcome,
                          "why": why, "seconds": round(time.perf_counter() - start, 2)}), flush=True)


# --- driver -----------------------------------------------------------------------------------------

def run_case(case: Case, work: Path, index: int) -> tuple[str, str, float]:
    folder = work / "cases" / f"{index:03d}"
    if folder.exists() or folder.is_symlink():  # a case folder of an earlier pass into the same --work
        import shutil

        for p in [folder, *folder.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if case.user == "student":
        # the student's own folder: its LABKIT_* defaults point here, not at root's shared work folders
        for name in ("cache", "runs", "data"):
            (folder / name).mkdir(exist_ok=True)
    if case.setup is not None:
        case.setup(folder)
    if case.user == "student":
        give_to_student(folder)
    before = snapshot(case.protect(folder)) if case.protect is not None else {}
    if case.runner is not None:
        res = case.runner(case, folder)
    else:
        env = base_env(work)
        if case.user == "student":
            env.update({"LABKIT_CACHE": str(folder / "cache"), "LABKIT_RUNS": str(folder / "runs"),
                        "LABKIT_DATA": str(folder / "data"), "HOME": str(folder)})
        for k, v in case.env.items():
            if v is None:
                env.pop(k, None)            # the variable unset
            else:
                env[k] = v.replace("{folder}", str(folder))
        if case.argv is not None:
            argv = case.argv(folder) if callable(case.argv) else case.argv
            cmd = labkit_cmd(*argv)
        else:
            cmd = case.cmd(folder) if callable(case.cmd) else case.cmd
        if case.user == "student":
            cmd = as_student(cmd)
        res = run_process(cmd, env, case.timeout, folder)
    if case.protect is not None:
        changed = changed_files(before, snapshot(case.protect(folder)))
        lost = [c for c in changed if not c.endswith("(written)")]
        read_only = [c for c in changed if _in_read_only(c)]
        if changed:
            worst = lost or read_only or changed
            shown = ", ".join(str(c) for c in worst[:3]) + (f" (+{len(worst) - 3})" if len(worst) > 3 else "")
            if lost:
                res.verdict = ("data lost", f"changed or removed: {shown}")
            elif read_only:
                res.verdict = ("data lost", f"wrote into a read-only folder (permissions ignored): {shown}")
            elif res.verdict is None and "Traceback" not in res.err:
                res.verdict = ("silent wrong", f"wrote into a folder it must leave alone: {shown}")
    outcome, why = classify(case, res, folder)
    return outcome, why, res.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a new temporary one)")
    parser.add_argument("--only", nargs="*", default=None, help="only these categories")
    parser.add_argument("--options-worker", nargs=2, metavar=("LAB", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=120, help="seconds per bad-option case")
    parser.add_argument("--families", nargs="*", default=None, metavar="FAMILY",
                        help=f"run these generated families ({', '.join(FAMILIES)}; none given: all); "
                             "with --only, both")
    parser.add_argument("--quick", action="store_true",
                        help="of each family's product keep a covering subset (each value of each axis once)")
    parser.add_argument("--users", nargs="+", default=None, choices=("root", "student"),
                        help="who runs the families' cases (default: root and, when run as root, the "
                             f"unprivileged user {STUDENT}, created if absent)")
    parser.add_argument("--match", default=None, help="only the cases whose name contains this text")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="start no case after this many minutes (the rest are counted as not run)")
    parser.add_argument("--list", action="store_true", help="print the chosen cases' names, run nothing")
    parser.add_argument("--api-case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.options_worker:
        options_worker(args.options_worker[0], Path(args.options_worker[1]), args.timeout)
        return 0
    if args.api_case:
        api_worker(args.api_case)
        return 0
    work = (args.work or Path(tempfile.mkdtemp(prefix="labkit-faults-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # the unprivileged user reads the fixtures
    os.environ.update({k: v for k, v in base_env(work).items() if k.startswith("LABKIT_")})
    Path(EVIL_MARK).unlink(missing_ok=True)
    started = time.perf_counter()
    families = list(FAMILIES) if args.families == [] else (args.families or [])
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    fx = prepare(work, families=bool(families))
    users = tuple(args.users or (("root", "student") if os.geteuid() == 0 else ("student",)))
    ctx = Ctx(fx=fx, quick=args.quick, users=users)
    builders: dict[str, Callable[[Any], list[Case]]] = {
        "kill": kill_cases, "checkpoint": checkpoint_cases, "data": data_cases, "output": output_cases,
        "env": env_cases, "cli": cli_cases, "concurrency": concurrency_cases, "ddp": ddp_cases}
    if args.families is not None and not args.only:
        wanted: list[str] = list(families)
    else:
        wanted = (args.only or [*builders, "options"]) + families
    builders.update({name: (lambda _fx, build=build: build(ctx)) for name, build in FAMILIES.items()})
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    index = 0
    for category, build in builders.items():
        if category not in wanted:
            continue
        for case in build(fx):
            if args.match and args.match not in case.name:
                continue
            index += 1
            if args.budget_minutes is not None and time.perf_counter() - started > args.budget_minutes * 60:
                skipped.append(f"[{category}] {case.name}")
                continue
            if args.list:
                print(f"[{category}] {case.name}{' (as ' + case.user + ')' if case.user != 'root' else ''}")
                continue
            try:
                outcome, why, seconds = run_case(case, work, index)
            except Exception as err:  # noqa: BLE001 (the pass itself must go on)
                outcome, why, seconds = "traceback", f"[pass error] {type(err).__name__}: {err}", 0.0
            rows.append({"category": category, "name": case.name, "outcome": outcome, "why": why,
                         "seconds": round(seconds, 1)})
            print(f"[{category}] {case.name}: {outcome}{' — ' + why if why else ''} ({seconds:.1f} s)", flush=True)
    if args.list:
        print(f"{index} cases")
        return 0
    if "options" in wanted:
        from labkit.lab import lab_names

        for lab in lab_names():
            folder = work / "options" / lab
            folder.mkdir(parents=True, exist_ok=True)
            res = run_process([sys.executable, str(Path(__file__).resolve()), "--options-worker", lab, str(folder),
                               "--timeout", str(args.timeout)], base_env(work), 1800, work)
            lines = [json.loads(line) for line in res.out.splitlines() if line.startswith("{")]
            expected = len(option_cases(lab))
            if len(lines) < expected:
                lines.append({"category": "options", "name": f"{lab}: worker stopped after {len(lines)} of "
                              f"{expected} cases", "outcome": "hang" if res.rc is None else "traceback",
                              "why": res.err.strip()[-200:], "seconds": res.seconds})
            rows += lines
            tally = {c: sum(r["outcome"] == c for r in lines) for c in CLASSES}
            print(f"[options] {lab}: {len(lines)} cases, {tally} ({res.seconds:.0f} s)", flush=True)
    counts = {c: sum(r["outcome"] == c for r in rows) for c in CLASSES}
    print()
    print("| tried | " + " | ".join(CLASSES) + " |")
    print("|---:|" + "---:|" * len(CLASSES))
    print(f"| {len(rows)} | " + " | ".join(str(counts[c]) for c in CLASSES) + " |")
    by_cat: dict[str, dict[str, int]] = {}
    for r in rows:
        by_cat.setdefault(r["category"], dict.fromkeys(CLASSES, 0))[r["outcome"]] += 1
    print()
    print("| category | tried | " + " | ".join(CLASSES) + " |")
    print("|---|---:|" + "---:|" * len(CLASSES))
    for cat, tally in by_cat.items():
        print(f"| {cat} | {sum(tally.values())} | " + " | ".join(str(tally[c]) for c in CLASSES) + " |")
    bad = [r for r in rows if r["outcome"] not in ("handled", "clear error")]
    if bad:
        print("\nnot OK:")
        for r in bad:
            print(f"  [{r['category']}] {r['name']}: {r['outcome']} — {r['why']}")
    if skipped:
        print(f"\nnot run (--budget-minutes {args.budget_minutes:g} spent): {len(skipped)} cases")
        for name in skipped:
            print(f"  {name}")
    (work / "fault_pass.json").write_text(json.dumps(rows, indent=1))
    minutes = (time.perf_counter() - started) / 60
    print(f"\nRESULT tried={len(rows)} " + " ".join(f"{c.replace(' ', '_')}={counts[c]}" for c in CLASSES)
          + f" minutes={minutes:.1f} (cases and outputs under {work})")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
