"""edgeseg/atomic.py is the one temp + rename writer (issue 27): no other module in edgeseg/ or
benchmarks/ renames files itself, and the writers it offers leave no half-written output."""

from __future__ import annotations

import ast
import errno
import os
from pathlib import Path

import pytest

from edgeseg import atomic
from edgeseg.atomic import atomic_copy, atomic_path, atomic_write_text, publish

REPO = Path(__file__).resolve().parents[1]

# Renames not yet moved onto edgeseg/atomic.py, each with why. Shrink this list; never grow it.
KNOWN: dict[str, str] = {}  # every temp + rename goes through edgeseg/atomic.py


def renames(source: str) -> list[int]:
    """Lines of ``os.replace`` / ``os.rename`` / ``shutil.move`` calls and of one-argument
    ``.replace(x)`` / ``.rename(x)`` method calls (``Path.replace``; ``str.replace`` takes two)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        f = node.func
        owner = f.value.id if isinstance(f.value, ast.Name) else None
        if (owner == "os" and f.attr in ("replace", "rename", "renames")) or \
                (owner == "shutil" and f.attr == "move") or \
                (owner not in ("os", "shutil", "dataclasses") and f.attr in ("replace", "rename")
                 and len(node.args) == 1 and not node.keywords):
            lines.append(node.lineno)
    return lines


def test_no_rename_outside_atomic() -> None:
    found = {}
    for path in sorted([*(REPO / "edgeseg").rglob("*.py"), *(REPO / "benchmarks").glob("*.py")]):
        rel = path.relative_to(REPO).as_posix()
        if rel == "edgeseg/atomic.py":
            continue
        lines = renames(path.read_text(encoding="utf-8"))
        if lines:
            found[rel] = lines
    extra = {k: v for k, v in found.items() if k not in KNOWN}
    assert not extra, f"temp + rename outside edgeseg/atomic.py (use atomic_path/...): {extra}"
    stale = sorted(set(KNOWN) - set(found))
    assert not stale, f"no rename left in {stale}: drop them from KNOWN"


@pytest.mark.parametrize("source, expected", [
    ("import os\nos.replace(a, b)\n", [2]),
    ("import os\nos.rename(a, b)\n", [2]),
    ("tmp.replace(out)\n", [1]),
    ("Path(tmp).rename(out)\n", [1]),
    ("import shutil\nshutil.move(a, b)\n", [2]),
    ("s.replace('a', 'b')\nname.rename\ndataclasses.replace(cfg)\n", []),
])
def test_rename_reader(source: str, expected: list[int]) -> None:
    assert renames(source) == expected


def test_atomic_path_leaves_old_file_on_error(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    out.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temp left


def test_atomic_copy_replaces_and_keeps_umask_mode(tmp_path: Path) -> None:
    src, dst = tmp_path / "a.onnx", tmp_path / "sub" / "b.onnx"
    src.write_bytes(b"new")
    old = os.umask(0o022)
    try:
        atomic_copy(src, dst)
    finally:
        os.umask(old)
    assert dst.read_bytes() == b"new"
    assert dst.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    atomic_copy(dst, dst)  # the same file: left alone, not truncated
    assert dst.read_bytes() == b"new"
    atomic_write_text(dst, "text")
    assert dst.read_text() == "text"


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _fail_renames_of(path: Path, code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """atomic.py's os.replace fails with ``code`` for renames of ``path`` (a full disk, a move
    across filesystems); every other rename happens."""
    real = os.replace

    def replace(src: object, dst: object) -> None:
        if Path(str(src)) == path:
            raise OSError(code, os.strerror(code))
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(atomic.os, "replace", replace)


def test_publish_swaps_a_folder_and_leaves_nothing_hidden(tmp_path: Path) -> None:
    out, staging = tmp_path / "repo", tmp_path / ".repo.stage"
    (out / "old").mkdir(parents=True)
    (out / "old" / "a.txt").write_text("old")
    (staging / "new").mkdir(parents=True)
    (staging / "new" / "b.txt").write_text("new")
    publish(staging, out)
    assert _tree(out) == {"new/b.txt": "new"}  # the old folder's files are gone, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # no .old / staging left


def test_publish_puts_the_old_folder_back_when_the_swap_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, staging = tmp_path / "repo", tmp_path / ".repo.stage"
    out.mkdir()
    (out / "a.txt").write_text("old")
    staging.mkdir()
    (staging / "b.txt").write_text("new")
    _fail_renames_of(staging, errno.ENOSPC, monkeypatch)
    with pytest.raises(OSError, match="No space"):
        publish(staging, out)
    assert _tree(out) == {"a.txt": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".repo.stage", "repo"]


def test_publish_a_file_across_filesystems_copies_then_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = tmp_path / "x" / "model.int8.onnx", tmp_path / "y" / "pick.onnx"
    src.parent.mkdir()
    dst.parent.mkdir()
    src.write_text("qdq")
    dst.write_text("earlier")
    _fail_renames_of(src, errno.EXDEV, monkeypatch)
    publish(src, dst)
    assert dst.read_text() == "qdq" and not src.exists()
    assert sorted(p.name for p in dst.parent.iterdir()) == ["pick.onnx"]


def test_publish_refuses_a_folder_onto_a_file(tmp_path: Path) -> None:
    (tmp_path / "stage").mkdir()
    (tmp_path / "out").write_text("a file")
    with pytest.raises(NotADirectoryError):
        publish(tmp_path / "stage", tmp_path / "out")
    assert (tmp_path / "out").read_text() == "a file"
