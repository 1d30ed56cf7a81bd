"""The one HxW parser behind --crop, --frame-size and --compare sizes."""

from __future__ import annotations

import pytest

from edgeseg.errors import EdgesegError
from edgeseg.sizes import parse_hw


def test_parse_hw_accepts_hxw_and_square() -> None:
    assert parse_hw("512x1024", "--size") == (512, 1024)
    assert parse_hw(" 720X1280 ", "--size") == (720, 1280)
    assert parse_hw("256", "--crop", square=True) == (256, 256)


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("256", {}, r"--size: expected HxW such as 512x1024, got '256'"),
        ("12x", {}, r"--size: expected HxW such as"),
        ("1x2x3", {"square": True}, r"--size: expected HxW or N such as"),
        ("8x64", {"minimum": 16}, r"--size: 8x64 is too small \(at least 16x16\)"),
        ("0x64", {}, r"too small"),
    ],
)
def test_parse_hw_errors_name_the_flag(text: str, kwargs: dict, message: str) -> None:
    with pytest.raises(EdgesegError, match=message):
        parse_hw(text, "--size", **kwargs)
