"""A broad fault-injection pass over the `labkit` command (issue 16), as a clumsy or hostile user tries it.

    OMP_NUM_THREADS=1 flock /tmp/cpu.lock python tools/fault_pass.py [--only CATEGORY ...] [--work DIR]

Each case runs the command as a subprocess with a timeout (kills, bad checkpoints, bad data sets,
concurrency, DDP, environment, output folders, command lines). The bad-option cases (0, -1, nan, inf,
a word and, for whole numbers, 2.5, for every numeric option of every lab: several hundred) run in
one subprocess per lab that calls `labkit.cli.main` once per case with its own alarm timeout: starting
a Python with torch per case would cost about 4 s each. Every outcome is classified:

* handled: exit 0 (or the expected exit, e.g. 130 after SIGTERM) and the result is correct;
* clear error: one `labkit: error:` line, exit 1 or 2, no traceback;
* silent wrong: exit 0 but wrong (an option ignored, a bad file used, the wrong thing written);
* traceback: a Python traceback, or another exit without a labkit message;
* hang: the timeout passed;
* data lost: a checkpoint that loaded before the case no longer loads.

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
CLASSES = ("handled", "clear error", "silent wrong", "traceback", "hang", "data lost")
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
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], Any] | None = None
    #: (result, case folder) -> True when an exit-0 result is correct (default: exit 0 is correct)
    check: Callable[[Result, Path], bool] | None = None
    expect_rc: int = 0                      # the exit code of a handled outcome (130 after SIGTERM)
    timeout: float = 120
    #: checkpoints that must still load afterwards (relative to the case folder)
    keep: tuple[str, ...] = ()
    runner: Callable[[Case, Path], Result] | None = None  # a case with its own process choreography


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
        return "clear error", next(line for line in res.err.splitlines() if "labkit: error:" in line)[:160]
    if res.rc == 0:
        return "silent wrong", "exit 0 where an error was expected"
    return "traceback", f"exit {res.rc} without a labkit message: {res.err.strip()[-160:]}"


def metrics(folder: Path, out: str = "out") -> dict[str, Any]:
    return json.loads((folder / out / "metrics.json").read_text())


# --- fixtures (built once) ------------------------------------------------------------------------

def prepare(work: Path) -> dict[str, Path]:
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
    for lab in ("mnist", "lm", "tiny-imagenet"):
        out = fx / f"good-{lab}"
        if not (out / "checkpoints" / "best.pt").is_file():
            extra = ("--schedule", "step") if lab == "mnist" else ()  # resumable for more epochs
            res = run_process(labkit_cmd("run", lab, "--smoke", "--epochs", "2", "--out", str(out), "--overwrite",
                                         "--no-tensorboard", *extra), env, 300, work)
            if res.rc != 0:
                raise SystemExit(f"fixture run of {lab} failed:\n{res.err[-2000:]}")
        paths[f"good-{lab}"] = out / "checkpoints"
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
    def two(lab: str, second_extra: tuple[str, ...] = ()) -> Callable[[Case, Path], Result]:
        def go(case: Case, folder: Path) -> Result:
            env = base_env(folder.parent.parent)
            out = folder / "out"
            base = ["run", lab, "--smoke", "--out", str(out), "--no-tensorboard"]
            first = subprocess.Popen(labkit_cmd(*base, "--lr", "0.01"), env=env, cwd=folder,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(0.3)
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
        Case("concurrency", "a run and an --overwrite run into one --out", runner=two("function-fitting",
                                                                                       ("--overwrite",)), timeout=300)]


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
    folder.mkdir(parents=True, exist_ok=True)
    if case.setup is not None:
        case.setup(folder)
    if case.runner is not None:
        res = case.runner(case, folder)
    else:
        env = base_env(work)
        env.update({k: v.replace("{folder}", str(folder)) for k, v in case.env.items()})
        if case.argv is not None:
            argv = case.argv(folder) if callable(case.argv) else case.argv
            cmd = labkit_cmd(*argv)
        else:
            cmd = case.cmd(folder) if callable(case.cmd) else case.cmd
        res = run_process(cmd, env, case.timeout, folder)
    outcome, why = classify(case, res, folder)
    return outcome, why, res.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a new temporary one)")
    parser.add_argument("--only", nargs="*", default=None, help="only these categories")
    parser.add_argument("--options-worker", nargs=2, metavar=("LAB", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=120, help="seconds per bad-option case")
    args = parser.parse_args(argv)
    if args.options_worker:
        options_worker(args.options_worker[0], Path(args.options_worker[1]), args.timeout)
        return 0
    work = (args.work or Path(tempfile.mkdtemp(prefix="labkit-faults-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.update({k: v for k, v in base_env(work).items() if k.startswith("LABKIT_")})
    Path(EVIL_MARK).unlink(missing_ok=True)
    started = time.perf_counter()
    fx = prepare(work)
    builders = {"kill": kill_cases, "checkpoint": checkpoint_cases, "data": data_cases, "output": output_cases,
                "env": env_cases, "cli": cli_cases, "concurrency": concurrency_cases, "ddp": ddp_cases}
    wanted = args.only or [*builders, "options"]
    rows: list[dict[str, Any]] = []
    index = 0
    for category, build in builders.items():
        if category not in wanted:
            continue
        for case in build(fx):
            index += 1
            try:
                outcome, why, seconds = run_case(case, work, index)
            except Exception as err:  # noqa: BLE001 (the pass itself must go on)
                outcome, why, seconds = "traceback", f"[pass error] {type(err).__name__}: {err}", 0.0
            rows.append({"category": category, "name": case.name, "outcome": outcome, "why": why,
                         "seconds": round(seconds, 1)})
            print(f"[{category}] {case.name}: {outcome}{' — ' + why if why else ''} ({seconds:.1f} s)", flush=True)
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
    (work / "fault_pass.json").write_text(json.dumps(rows, indent=1))
    minutes = (time.perf_counter() - started) / 60
    print(f"\nRESULT tried={len(rows)} " + " ".join(f"{c.replace(' ', '_')}={counts[c]}" for c in CLASSES)
          + f" minutes={minutes:.1f} (cases and outputs under {work})")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
