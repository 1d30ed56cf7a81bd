"""Atomic output files: write a temporary file next to the target, rename it on success.

The one helper behind every temp + rename writer (checkpoints, ONNX, engines, calibration
folders, bench reports). ``tempfile.mkstemp`` creates files with mode 0600 and ``mkdtemp``
folders with 0700; renamed into place they would keep those modes, so an artifact written by
a container into a mounted folder would be unreadable to everyone else. The temporary file
therefore gets the mode the user's umask gives a normal new file (0666 & ~umask; folders
0777 & ~umask) before it is renamed.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path", "atomic_write_bytes", "atomic_write_text", "current_umask", "default_mode",
    "publish", "staging_dir",
]


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc, kernel >= 4.7);
    elsewhere set-and-restore (a tiny window other threads could observe)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode ``open()`` (or ``mkdir``) would give a new file (folder) here."""
    return (0o777 if directory else 0o666) & ~current_umask()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same folder, so the rename is atomic) that the
    caller fills; on success it takes the umask's normal file mode and replaces ``path``. On any
    exception, Ctrl-C included, it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: Any, *, fsync: bool = False) -> Path:
    """Write ``data`` (bytes or any buffer) to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_copy(src: str | Path, dst: str | Path) -> Path:
    """Copy ``src`` over ``dst`` atomically (a reader of ``dst`` sees the old or the new file,
    never part of one); the same file is left alone."""
    src, dst = Path(src), Path(dst)
    if dst.exists() and src.resolve() == dst.resolve():
        return dst
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def staging_dir(out: str | Path) -> Path:
    """A new hidden folder next to ``out`` (for a whole output folder renamed at the end),
    with the umask's normal folder mode instead of mkdtemp's 0700."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    staging.chmod(default_mode(directory=True))
    return staging


def publish(src: str | Path, dst: str | Path) -> Path:
    """Move a finished file or folder ``src`` (a temp file, a staging folder, a file a library
    wrote into one) onto ``dst`` in one rename, so a reader of ``dst`` sees the old or the new
    result, never part of one.

    A folder replaces an existing ``dst`` folder by a swap: the old one is renamed aside, the
    new one renamed in (the old one put back if that fails), and only then is the old one
    removed. A file across filesystems (no atomic rename there) is copied next to ``dst`` and
    renamed, then ``src`` removed.
    """
    src, dst = Path(src), Path(dst)
    if src.is_dir():
        if not dst.exists():
            os.replace(src, dst)
            return dst
        if not dst.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "a folder cannot replace a file", str(dst))
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
        os.replace(dst, old / dst.name)
        try:
            os.replace(src, dst)
        except BaseException:
            os.replace(old / dst.name, dst)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
        return dst
    try:
        os.replace(src, dst)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        atomic_copy(src, dst)
        src.unlink()
    return dst
