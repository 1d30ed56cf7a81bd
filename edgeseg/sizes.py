"""``HxW`` sizes given on the command line (crops, frame sizes, benchmark configurations)."""

from __future__ import annotations

from edgeseg.errors import EdgesegError

__all__ = ["hw_from_flags", "parse_hw"]


def parse_hw(text: str, what: str, *, minimum: int = 1, square: bool = False) -> tuple[int, int]:
    """``"512x1024"`` -> ``(512, 1024)``; with ``square``, ``"512"`` means 512x512.

    ``what`` names the flag or key in the one-line error; sizes below ``minimum`` are refused.
    """
    expected = "HxW or N" if square else "HxW"
    try:
        parts = [int(v) for v in text.strip().lower().split("x")]
    except ValueError:
        raise EdgesegError(f"{what}: expected {expected} such as 512x1024, got '{text}'") from None
    if square and len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise EdgesegError(f"{what}: expected {expected} such as 512x1024, got '{text}'")
    h, w = parts
    if min(h, w) < minimum:
        raise EdgesegError(f"{what}: {h}x{w} is too small (at least {minimum}x{minimum})")
    return h, w


def hw_from_flags(
    height: int | None, width: int | None, *, flags: tuple[str, str] = ("--height", "--width")
) -> tuple[int, int] | None:
    """``(height, width)`` from a pair of flags given together, None when neither is given.

    One rule for every command: a size is both numbers or none; one alone would be mixed with
    another source's other side (a profile's or the model's) into a shape nobody asked for.
    """
    if height is None and width is None:
        return None
    if height is None or width is None:
        given, missing = (flags[0], flags[1]) if width is None else (flags[1], flags[0])
        raise EdgesegError(f"{given} needs {missing} too: give both (a size is HxW)")
    return height, width
