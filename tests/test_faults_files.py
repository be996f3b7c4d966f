"""Where labkit writes: read-only data (also for root and for an unprivileged user), no HOME, release through
symlinks, damaged and orphaned cache files, a full disk under the cache."""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from labkit import config
from labkit.data import image_cache
from labkit.errors import DataError, UsageError, WriteError

REPO = Path(__file__).resolve().parent.parent
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (to test as root, or to switch user)")


def read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)


def tree(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def unprivileged(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    """`args` as the user labkitfault (or nobody): writes are checked as that user; reads keep
    CAP_DAC_READ_SEARCH only so the interpreter (perhaps under /root) and this checkout are reachable."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    try:
        user = pwd.getpwnam("labkitfault")
    except KeyError:
        user = pwd.getpwnam("nobody")
    command = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
               "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "env", "-i",
               *(f"{k}={v}" for k, v in env.items()), *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("LABKIT_CACHE", raising=False)
    return home


def test_read_only_data_sends_caches_to_the_user_cache_even_for_root(tmp_path, home, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("LABKIT_DATA", str(data))
    assert config.cache_dir() == data / "cache"  # writable: beside the datasets
    read_only(data)
    try:
        assert not config.writable(data)  # no write bits: read-only, whatever os.access says to root
        assert config.cache_dir() == home / ".cache" / "labkit"
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert config.cache_dir() == tmp_path / "xdg" / "labkit"
        monkeypatch.setenv("XDG_CACHE_HOME", str(data / "xdg"))  # nothing writable: say what to set
        with pytest.raises(WriteError, match="Set LABKIT_CACHE"):
            config.cache_dir()
    finally:
        data.chmod(0o755)


def test_smoke_runs_never_write_into_read_only_data(tmp_path, home, monkeypatch, capsys):
    """As root the read-only LABKIT_DATA stays untouched: `labkit run tiny-imagenet --smoke --data` and
    `labkit run lm --smoke` put their caches and generated data in the user cache."""
    from labkit.cli import main
    from labkit.labs.tiny_imagenet.data import write_synthetic_tiny_imagenet

    data = tmp_path / "data"
    tiny = write_synthetic_tiny_imagenet(data, n_classes=3, n_train_per_class=4, n_val_per_class=2)
    read_only(data)
    before = tree(data)
    monkeypatch.setenv("LABKIT_DATA", str(data))
    try:
        assert main(["run", "tiny-imagenet", "--smoke", "--data", str(tiny), "--epochs", "1"]) == 0
        assert main(["run", "lm", "--smoke", "--epochs", "1"]) == 0
        assert tree(data) == before
    finally:
        for path in [data, *data.rglob("*")]:
            path.chmod(0o755)
    cache = home / ".cache" / "labkit"
    assert list(cache.glob("tiny-imagenet-train-*.pt"))
    assert (cache / "synthetic" / "wikitext-2-synthetic" / "train.txt").is_file()


@needs_root
def test_every_lab_smoke_as_an_unprivileged_user_with_read_only_data(tmp_path):
    """The course-server set-up: read-only LABKIT_DATA, a writable LABKIT_CACHE, a student's uid."""
    data, cache, runs = tmp_path / "data", tmp_path / "cache", tmp_path / "runs"
    for folder in (data, cache, runs):
        folder.mkdir()
    cache.chmod(0o777)
    runs.chmod(0o777)
    read_only(data)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path / "nohome"), "PYTHONPATH": str(REPO),
           "LABKIT_DATA": str(data), "LABKIT_CACHE": str(cache), "LABKIT_RUNS": str(runs),
           "LABKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = unprivileged([sys.executable, "-m", "labkit", "smoke"], env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert not list(data.iterdir())
    assert {p.name for p in (cache / "synthetic").iterdir()} == {"tiny-imagenet", "cifar10", "mnist",
                                                                 "wikitext-2-synthetic"}


def test_no_home_and_no_labkit_data_is_a_usage_error(monkeypatch):
    import pwd as pwd_module

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("LABKIT_DATA", raising=False)
    monkeypatch.delenv("LABKIT_CACHE", raising=False)
    monkeypatch.setenv("LABKIT_RUNS", "~/runs")
    monkeypatch.setattr(pwd_module, "getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))
    for where in (config.data_root, config.cache_dir, config.runs_dir):
        with pytest.raises(UsageError, match=r"set LABKIT_DATA \(and LABKIT_RUNS\)"):
            where()


@needs_root
def test_no_home_on_the_command_line(tmp_path):
    """A uid without a passwd entry and no HOME (a container): one `labkit: error:` line, exit code 2."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "LABKIT_RUNS": str(tmp_path),
           "LABKIT_PROGRESS": "0", "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(tmp_path)}
    tmp_path.chmod(0o777)
    done = subprocess.run(["setpriv", "--reuid=54321", "--regid=54321", "--clear-groups",
                           "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "env", "-i",
                           *(f"{k}={v}" for k, v in env.items()), sys.executable, "-m", "labkit", "run", "lm",
                           "--smoke"], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.splitlines()[-1]  # (matplotlib may warn before it)
    assert last.startswith("labkit: error: ") and "set LABKIT_DATA (and LABKIT_RUNS)" in last
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- the decoded-image cache


@pytest.fixture
def images(tmp_path) -> tuple[Path, list[str]]:
    root = tmp_path / "images"
    root.mkdir()
    names = []
    for i in range(6):
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(root / f"{i}.png")
        names.append(f"{i}.png")
    return root, names


def test_a_cache_truncated_while_in_use_does_not_kill_the_run(images, tmp_path):
    """The cache is read, not memory-mapped: truncating the file under a run cannot raise SIGBUS (exit 135)."""
    root, names = images
    script = (f"import os; from pathlib import Path; from labkit.data.image_cache import cached_images\n"
              f"args = (Path({str(root)!r}), {names!r}, 8, 'demo', Path({str(tmp_path / 'cache')!r}))\n"
              "cached_images(*args, verbose=False)\n"
              "images = cached_images(*args, verbose=False)\n"
              f"[os.truncate(p, 0) for p in Path({str(tmp_path / 'cache')!r}).glob('demo-*.pt')]\n"
              "print(int(images.long().sum()))\n")
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert int(done.stdout.split()[-1]) == sum(40 * i * 8 * 8 * 3 for i in range(6))


def test_a_damaged_cache_is_rebuilt_or_named(images, tmp_path, capsys):
    root, names = images
    cache = tmp_path / "cache"
    first = image_cache.cached_images(root, names, 8, "demo", cache, verbose=False)
    (path,) = cache.glob("demo-*.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert torch.equal(image_cache.cached_images(root, names, 8, "demo", cache, verbose=False), first)
    assert "is unreadable" in capsys.readouterr().out and path.stat().st_size > first.numel()
    path.write_bytes(b"not a torch file" * 100)
    read_only(cache)
    try:
        with pytest.raises(DataError, match="delete the file"):
            image_cache.cached_images(root, names, 8, "demo", cache, verbose=False)
    finally:
        cache.chmod(0o755)


def test_a_full_disk_under_the_cache_is_a_write_error(images, tmp_path, monkeypatch):
    """torch.save reports ENOSPC as `RuntimeError: [enforce fail at inline_container.cc:672]`, the OSError
    only as its context."""
    root, names = images

    def full_disk(obj, handle):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None

    monkeypatch.setattr(image_cache.torch, "save", full_disk)
    cache = tmp_path / "cache"
    with pytest.raises(WriteError, match="is full") as info:
        image_cache.cached_images(root, names, 8, "demo", cache, verbose=False)
    assert str(cache) in str(info.value) and "LABKIT_CACHE" in str(info.value)
    assert not list(cache.iterdir())  # no temp file left


@needs_root
def test_a_full_tmpfs_under_the_cache_is_a_write_error(images, tmp_path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        root, _ = images
        names = []
        for i in range(40):  # 40 x 3 x 64 x 64 bytes: far more than 64 KiB
            Image.fromarray(np.full((64, 64, 3), i, dtype=np.uint8)).save(root / f"big{i}.png")
            names.append(f"big{i}.png")
        with pytest.raises(WriteError, match=f"the disk holding {mount} is full"):
            image_cache.cached_images(root, names, 64, "demo", mount, verbose=False)
        assert not list(mount.iterdir())
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_cache_build_removes_temp_files_of_killed_builds(images, tmp_path):
    root, names = images
    cache = tmp_path / "cache"
    cache.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = cache / f".demo-0123.pt.tmp-{dead.pid}"
    orphan.write_bytes(b"x" * 1000)
    alive = cache / f".other.pt.tmp-{os.getpid()}"  # a build still running: kept
    alive.write_bytes(b"x")
    image_cache.cached_images(root, names, 8, "demo", cache, verbose=False)
    assert not orphan.exists() and alive.exists()
