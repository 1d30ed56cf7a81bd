"""The numeric precisions a deployment can run at: the one list every command checks against."""

from __future__ import annotations

from edgeseg.errors import EdgesegError

__all__ = ["PRECISIONS", "check_precision"]

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")


def check_precision(precision: str, what: str = "--precision") -> str:
    """``precision`` when it is one of :data:`PRECISIONS`; else one line naming ``what``."""
    if precision not in PRECISIONS:
        raise EdgesegError(f"{what} {precision}: expected one of {', '.join(PRECISIONS)}")
    return precision
