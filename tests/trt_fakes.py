"""Unit-test fakes of TensorRT built from the vendored 10.13 stubs (typings/).

The stub classes are loaded as real Python classes (the .pyi executed statement by statement,
bases first) and mocked with ``create_autospec(..., spec_set=True)``: a call with a name or an
argument count the stubs do not have fails the test, as it would fail on a Jetson.
"""

from __future__ import annotations
import __future__

import ast
import functools
import re
import types
from pathlib import Path
from typing import Any
from unittest import mock

STUB = Path(__file__).resolve().parents[1] / "typings" / "tensorrt_bindings" / "tensorrt.pyi"
_ENUM_VALUE = re.compile(r"# value = <\w+\.(\w+): (-?\d+)>")


@functools.cache
def stub_module() -> types.ModuleType:
    """tensorrt_bindings.tensorrt from the stubs, as classes: enum members are ints (their
    values from the stubs' comments), annotated attributes exist (None) so autospec allows them."""
    source = STUB.read_text()
    lines = source.splitlines()
    mod = types.ModuleType("tensorrt_stub")
    flags = __future__.annotations.compiler_flag
    pending = list(ast.parse(source).body)
    # typing.overload would replace each method by a dummy taking *args: keep the last
    # overload's real signature instead.
    with mock.patch("typing.overload", lambda f: f):
        _define(mod, pending, flags, lines)
    return mod


def _define(mod: types.ModuleType, pending: list[ast.stmt], flags: int, lines: list[str]) -> None:
    while pending:
        left = []
        for node in pending:
            code = compile(ast.Module([node], []), str(STUB), "exec", flags=flags, dont_inherit=True)
            try:
                exec(code, mod.__dict__)  # noqa: S102 - the vendored stubs, ours
            except NameError:
                left.append(node)
            else:
                if isinstance(node, ast.ClassDef):
                    _fill_class(getattr(mod, node.name), node, lines)
        if len(left) == len(pending):
            raise RuntimeError(f"stubs: cannot define {[getattr(n, 'name', n) for n in left]}")
        pending = left


def _fill_class(cls: type, node: ast.ClassDef, lines: list[str]) -> None:
    for item in node.body:
        if isinstance(item, ast.ClassDef):
            _fill_class(getattr(cls, item.name), item, lines)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            name = item.target.id
            if name in cls.__dict__ or name.startswith("__"):
                continue
            m = _ENUM_VALUE.search(lines[item.lineno - 1])
            setattr(cls, name, int(m.group(2)) if m else None)


def spec(name: str, /, **attrs: Any) -> Any:
    """An autospec'd instance of stub class ``name`` (dotted for nested), attributes set."""
    obj: Any = stub_module()
    for part in name.split("."):
        obj = getattr(obj, part)
    m = mock.create_autospec(obj, instance=True, spec_set=True)
    for k, v in attrs.items():
        setattr(m, k, v)
    return m


def fake_trt(version: str = "10.3.0.30", **overrides: Any) -> types.SimpleNamespace:
    """A ``tensorrt`` module: stub enums and base classes, autospec'd free functions.

    ``Builder``, ``Runtime``, ``OnnxParser`` are mocks returning ``spec(...)`` instances the
    test configures; ``overrides`` replace any entry.
    """
    s = stub_module()
    ns: dict[str, Any] = {
        "__version__": version,
        "__file__": "/fake/tensorrt/__init__.py",
        **{name: getattr(s, name) for name in (
            "ILogger", "IProgressMonitor", "IInt8EntropyCalibrator2", "IProfiler",
            "NetworkDefinitionCreationFlag", "BuilderFlag", "MemoryPoolType", "DeviceType",
            "DataType", "TensorIOMode", "ElementWiseOperation", "InterpolationMode",
            "SampleMode", "PluginFieldType", "TensorRTPhase", "Dims",
        )},
        "init_libnvinfer_plugins": mock.create_autospec(s.init_libnvinfer_plugins),
        "get_plugin_registry": mock.create_autospec(s.get_plugin_registry),
        "Builder": mock.Mock(name="Builder"),
        "Runtime": mock.Mock(name="Runtime"),
        "OnnxParser": mock.Mock(name="OnnxParser"),
    }
    ns.update(overrides)
    return types.SimpleNamespace(**ns)
