"""The package's layers: every edgeseg import points down (docs/ARCHITECTURE.md, "Layers").

Imports are read from the source (every ``import`` statement, also those inside functions and
under TYPE_CHECKING), so a lazy import that runs back up a layer fails here too. So are the
imports named as strings (``import_module("edgeseg.x")``, a ``"edgeseg.x.y:attr"`` opener in a
registry): one of those may not run up a layer, nor across to another package of its layer.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "edgeseg"

# Lowest first. A unit is a subpackage of edgeseg or a module directly under it. A unit may
# import units of its own layer or below; the same-layer imports must not form a cycle.
LAYERS: list[tuple[str, ...]] = [
    ("edgeseg", "errors", "sizes", "durations", "precision", "_callable", "atomic", "metrics"),
    ("models", "data", "profiles"),
    ("artifacts",),
    ("runtime",),
    ("train", "deploy"),
    ("video", "bench", "doctor", "web", "ros", "tune"),
    ("demo", "io"),
    ("cli", "__main__"),
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}

# Known exceptions, each with the reason it is still there.
ALLOWED: dict[tuple[str, str], str] = {}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "edgeseg"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str | None = None) -> list[tuple[str, int, bool]]:
    """(imported edgeseg module, line, at module level) for every import in ``path``
    (``module``: its dotted name, default from its place under edgeseg/)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    for node in tree.body:  # TYPE_CHECKING blocks count as module level
        if isinstance(node, ast.If):
            top.update(id(n) for n in node.body)
    name = module or _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            if name == "edgeseg" or name.startswith("edgeseg."):
                found.append((name, node.lineno, id(node) in top))
    return found


def _all_imports() -> list[tuple[str, str, int, bool]]:
    """(importing module, imported module, line, module level) over the whole package."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        src = _module_name(path)
        for target, line, top in _imports(path):
            out.append((src, target, line, top))
    return out


_MODULES = {_module_name(p) for p in ROOT.rglob("*.py")}
_REF = re.compile(r"edgeseg(?:\.\w+)+(?::\w+)?")
# Where a string naming an upper module is the point: the package root's PEP 562 table
# (``edgeseg.<command>``) is the public facade and names each command's module lazily.
STRING_FACADES = {"edgeseg"}


def _string_imports(path: Path) -> list[tuple[str, int]]:
    """(module, line) for every string constant that names an edgeseg module, whole
    (``"edgeseg.web.sink"`` or ``"edgeseg.web.sink:open"``); metadata keys such as
    ``"edgeseg.meta"`` name no module and are skipped."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and _REF.fullmatch(node.value):
            module = node.value.partition(":")[0]
            if module in _MODULES:
                out.append((module, node.lineno))
    return out


def _string_problems(files: list[tuple[Path, str]]) -> list[str]:
    """``files``: (path, its dotted module name)."""
    bad = []
    for path, src in files:
        a = _unit(src)
        if a in STRING_FACADES:
            continue
        for target, line in sorted(_string_imports(path), key=lambda t: t[1]):
            b = _unit(target)
            if a != b and RANK.get(b, -1) >= RANK.get(a, -1):
                bad.append(f"{src}:{line} names {target!r} ({a} may not reach "
                           f"{'up to' if RANK.get(b, -1) > RANK.get(a, -1) else 'across to'} {b})")
    return bad


def test_string_imports_point_down() -> None:
    bad = _string_problems([(p, _module_name(p)) for p in sorted(ROOT.rglob("*.py"))])
    assert not bad, "string imports up a layer or across one:\n" + "\n".join(bad)


def test_string_reader_catches_the_old_registry(tmp_path: Path) -> None:
    """video/registry.py as it was (issue 27) names web and ros, both on its own layer."""
    old = ROOT / "video" / "registry.py"
    text = old.read_text() + (
        '\nregister_sink(IOKind("web", "edgeseg.web.sink:open_registered"))\n'
        'register_source(IOKind("rosbag", "edgeseg.ros.bag:open_bag_capture", '
        'probe="edgeseg.ros.probe:is_rosbag2_folder"))\n'
        'importlib.import_module("edgeseg.cli.run")\n'
        'META_KEY = "edgeseg.meta"\n')
    copy = tmp_path / "registry.py"
    copy.write_text(text)
    bad = _string_problems([(copy, "edgeseg.video.registry")])
    assert [b.split(" names ")[1].split(" (")[0] for b in bad] == [
        "'edgeseg.web.sink'", "'edgeseg.ros.bag'", "'edgeseg.ros.probe'", "'edgeseg.cli.run'"]
    assert "across to web" in bad[0] and "up to cli" in bad[3]


def test_every_unit_has_a_layer() -> None:
    units = {_unit(_module_name(p)) for p in ROOT.rglob("*.py")}
    missing = sorted(units - set(RANK))
    assert not missing, f"add these to LAYERS (and docs/ARCHITECTURE.md): {missing}"


def test_imports_point_down() -> None:
    upward = []
    for src, target, line, _top in _all_imports():
        a, b = _unit(src), _unit(target)
        if a == b or (src, target) in ALLOWED:
            continue
        if RANK.get(b, -1) > RANK.get(a, -1):
            upward.append(f"{src}:{line} imports {target} ({a} is below {b})")
    assert not upward, "imports that run up a layer:\n" + "\n".join(upward)


def test_no_cycles_between_units_of_a_layer() -> None:
    edges: dict[str, set[str]] = {}
    for src, target, _line, _top in _all_imports():
        a, b = _unit(src), _unit(target)
        if a != b and RANK.get(a) == RANK.get(b):
            edges.setdefault(a, set()).add(b)
    for a, targets in edges.items():
        for b in targets:
            assert a not in edges.get(b, set()), f"{a} and {b} import each other"


def test_no_module_level_import_cycles() -> None:
    """Module-level imports form no cycle (a cycle works only by import order luck)."""
    graph: dict[str, set[str]] = {}
    modules = {_module_name(p) for p in ROOT.rglob("*.py")}
    for src, target, _line, top in _all_imports():
        if top and target in modules and target != src:
            graph.setdefault(src, set()).add(target)
    # Tarjan's strongly connected components.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"module-level import cycles: {cycles}"


def test_no_cli_import_outside_cli() -> None:
    """Library code never reaches into the command layer (only the entry point does)."""
    bad = [f"{src}:{line}" for src, target, line, _top in _all_imports()
           if _unit(target) == "cli" and _unit(src) not in ("cli", "__main__")]
    assert not bad, f"edgeseg.cli imported outside edgeseg/cli/: {bad}"


@pytest.mark.parametrize("source, expected", [
    ("from edgeseg.runtime import open_segmenter\n", [("edgeseg.runtime", True)]),
    ("def f():\n    from edgeseg.cli import app\n", [("edgeseg.cli", False)]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import edgeseg.web.app\n",
     [("edgeseg.web.app", True)]),
    ("from ..runtime import base\n", [("edgeseg.runtime", True)]),
    ("import os\nfrom edgeseg_other import x\n", []),
])
def test_import_reader(tmp_path: Path, source: str, expected: list[tuple[str, bool]]) -> None:
    """The checker itself: lazy, type-only and relative imports are all found."""
    f = tmp_path / "m.py"
    f.write_text(source)
    got = [(name, top) for name, _line, top in _imports(f, module="edgeseg.video.m")]
    assert got == expected


def test_deploy_and_tune_need_no_train() -> None:
    """Issue 27: the confusion matrix lives in edgeseg/metrics.py, so exporting, calibrating and
    tuning import nothing from train/ (training code and its dependencies stay out of them)."""
    bad = [f"{src}:{line} imports {target}" for src, target, line, _top in _all_imports()
           if _unit(src) in ("deploy", "tune") and _unit(target) == "train"]
    assert not bad, "\n".join(bad)
