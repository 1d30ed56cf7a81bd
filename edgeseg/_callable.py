"""Packages that are also the function of their command (``edgeseg.train(cfg)``).

``edgeseg.train`` and ``edgeseg.bench`` are both subpackages and the public functions of their
commands. Python rebinds ``edgeseg.train`` to the subpackage whenever one of its modules is
imported, so the function cannot simply be an attribute of ``edgeseg``; instead the package
module itself becomes callable and forwards to the function.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def make_callable(package: str, target: str) -> None:
    """Make ``sys.modules[package]`` callable as ``"module:function"`` ``target``."""
    module, _, attr = target.partition(":")

    class _CommandPackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module(module), attr)(*args, **kwargs)

    _CommandPackage.__call__.__doc__ = f"Call :func:`{module}.{attr}`."
    sys.modules[package].__class__ = _CommandPackage
