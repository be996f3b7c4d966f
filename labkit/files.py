"""Files written so that a kill never leaves half of one (`atomic_write`), file digests, and downloads."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import IO

from labkit.errors import DataError, WriteError

#: files labkit writes are readable by group and others (caches shared on a course server)
FILE_MODE = 0o644

#: the errno values of a full disk (ENOSPC) or a used-up quota (EDQUOT)
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _write_error(path: Path, err: OSError) -> WriteError:
    if path.is_dir():
        why = f"{path} is a folder; give a file name inside it (e.g. {path / 'model.pth'})"
    elif isinstance(err, PermissionError):
        why = f"no permission to write in {path.parent}"
    else:
        blocker = next((p for p in [path.parent, *path.parent.parents] if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker else f"{err.strerror or err}"
    return WriteError(f"cannot write {path}: {why}. Choose another path.")


def disk_full(path: str | os.PathLike, err: BaseException | None) -> WriteError | None:
    """A WriteError for `err` when it, or an error it arose from, says the disk or quota is full (None
    otherwise): torch.save reports a full disk as a RuntimeError whose context is the OSError."""
    while err is not None and getattr(err, "errno", None) not in _FULL and "No space left on device" not in str(err):
        err = err.__cause__ or err.__context__
    if err is None:
        return None
    path = Path(path)
    kept = f" the previous {path.name} is kept unchanged." if path.exists() else ""
    try:
        free = shutil.disk_usage(path.parent).free
        space = f"{free / 1e6:.1f} MB" if free < 1e9 else f"{free / 1e9:.1f} GB"
    except OSError:
        space = "unknown"
    return WriteError(
        f"the disk holding {path.parent} is full ({space} free): {path.name} could not be written;"
        f"{kept or ' nothing was written.'} Free some space (e.g. delete old runs or their epoch_NNN.pt files), or "
        "write to another disk (--out DIR, LABKIT_CACHE), then run again (a run can continue with --resume CKPT).")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary handle on a temporary sibling (`.NAME.tmp-PID`), fsynced and renamed over `path` (mode 0o644;
    a symlink at `path` is replaced, not written through). On failure the temporary file is removed and
    `path` left as it was; a full disk (or quota) is a `WriteError` that says so."""
    path = Path(path)
    if path.is_dir():
        raise _write_error(path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(tmp, "wb")  # noqa: SIM115 (closed by the `with` below)
    except OSError as err:
        raise (disk_full(path, err) or _write_error(path, err)) from None
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if (full := disk_full(path, err)) is not None:
            raise full from err
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_write(path) as handle:
        handle.write(data)
    return Path(path)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """The hex digest of a file (`md5`, `sha256`, ...), read in 1 MiB chunks: labkit's one file checksum."""
    hasher = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            hasher.update(block)
    return hasher.hexdigest()


def fetch(urls: str | Sequence[str], folder: str | os.PathLike, filename: str | None = None, *,
          md5: str | None = None, sha256: str | None = None, extract: bool = False, hint: str = "") -> Path:
    """`folder/filename` from the first of `urls` that serves it with the given md5 or SHA-256 (a matching copy
    there is kept); with `extract`, unpacked into `folder` (returned) and deleted. A failure is one DataError
    listing each address tried and why, and how to get the file by hand (`hint` adds a sentence)."""
    from torchvision.datasets.utils import download_url, extract_archive

    urls = [urls] if isinstance(urls, str) else list(urls)
    folder = Path(folder).expanduser()
    target = folder / (filename or urls[0].rstrip("/").rsplit("/", 1)[-1])
    algorithm, expected = ("md5", md5) if md5 else ("sha256", sha256)
    if not (target.is_file() and (expected is None or file_digest(target, algorithm) == expected)):
        folder.mkdir(parents=True, exist_ok=True)
        partial, errors = folder / f".{target.name}.tmp-{os.getpid()}", []
        for url in urls:
            try:
                download_url(url, str(folder), partial.name)
                if (got := expected and file_digest(partial, algorithm)) == expected:
                    os.replace(partial, target)
                    break
                errors.append(f"  {url}: checksum mismatch: {algorithm} {got}, expected {expected}")
            except (OSError, ValueError) as err:  # URLError and HTTPError are OSErrors
                errors.append(f"  {url}: {err}")
            finally:
                partial.unlink(missing_ok=True)
        else:
            raise DataError(f"could not download {target.name}:\n" + "\n".join(errors) + "\nCheck the internet "
                            f"connection (or proxy), or download the file by hand and put it at {target}, then "
                            f"run again.{' ' + hint if hint else ''}")
    if not extract:
        return target
    outside = [m for m in _archive_members(target) if PurePosixPath(m).is_absolute() or ".." in PurePosixPath(m).parts]
    if outside:
        raise DataError(f"{target} contains {outside[0]!r}, which points outside {folder}; not extracting.")
    try:
        extract_archive(str(target), str(folder), remove_finished=True)
    except (OSError, EOFError, RuntimeError, zipfile.BadZipFile, tarfile.TarError) as err:
        raise DataError(f"could not unpack {target} ({err}): the file is damaged; delete it and run again.") from err
    return folder


def _archive_members(archive: Path) -> list[str]:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            return zf.namelist()
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            return tf.getnames()
    return []


def remove_orphan_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the `.NAME.tmp-PID` files in `folder` of processes no longer alive (killed while writing)."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and process_alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def process_alive(pid: int) -> bool:
    """True when a process with this id runs on this machine (a lock's or temp file's owner)."""
    try:
        with contextlib.suppress(PermissionError):  # another user's
            os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def read_utf8(path: str | os.PathLike, what: str = "text file") -> str:
    """A UTF-8 text file's contents; UTF-16 (Windows' "Unicode") and other encodings are a DataError naming the
    file, the line and what to do."""
    path = Path(path)
    data = path.read_bytes()
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(
            f"{path} ({what}) is UTF-16 text (it starts with a UTF-16 byte-order mark); labkit reads UTF-8. "
            f"Fix: convert it, e.g. `iconv -f UTF-16 -t UTF-8 {path.name} > fixed.txt`, or use the original file.")
    try:
        return data.decode("utf-8-sig" if data[:3] == b"\xef\xbb\xbf" else "utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line} ({what}) is not UTF-8: byte {data[err.start]:#04x} at line {line} cannot be decoded. "
            "Was the file saved in another encoding (e.g. Latin-1)? Fix: convert it to UTF-8 (`iconv -f LATIN1 "
            f"-t UTF-8`), or use the original file.") from None
