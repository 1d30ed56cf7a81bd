"""Which sink each frame goes to when ``run`` has several ``--sink`` and ``--source`` values.

A sink spec holding ``{name}`` is opened once per source, with the source's name (a file's
stem, else ``cam<index>``); the other sinks are shared (one mosaic of all sources when there
are several, the one source's frames otherwise). Several sinks of one source are a
:class:`~edgeseg.video.sinks.TeeSink`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.video.sinks import Sink, TeeSink, open_sink

__all__ = ["Fanout", "open_fanout", "source_name", "source_names"]


def source_name(spec: str, index: int) -> str:
    """``{name}`` in a per-source sink: a file's stem, else ``cam<index>``."""
    from edgeseg.video.sources import parse_source

    s = parse_source(spec)
    if s.kind in ("video", "image", "folder"):
        return Path(str(s.target)).stem or f"src{index}"
    return f"cam{index}"


def source_names(specs: Sequence[str]) -> list[str]:
    """One distinct name per source (``-<index>`` appended to every name when two clash)."""
    names = [source_name(s, i) for i, s in enumerate(specs)]
    if len(set(names)) != len(names):
        names = [f"{n}-{i}" for i, n in enumerate(names)]
    return names


@dataclass
class Fanout:
    """The opened sinks: ``per_source[i]`` (None: the source has no own sink) and ``shared``."""

    per_source: list[Sink | None]
    shared: list[Sink]
    opened: list[Sink] = field(default_factory=list)

    def close(self) -> None:
        for snk in self.opened:
            snk.close()


def open_fanout(
    sinks: Sequence[str], names: Sequence[str], fps: Sequence[float | None], *,
    classes: Sequence[str], palette: Sequence[Sequence[int]], masks: Sequence[str],
    options: dict[str, Any] | None = None,
) -> Fanout:
    """Open every sink of a multi-source run; on a failure the ones already open are closed."""
    opened: list[Sink] = []

    def op(spec: str, rate: float | None) -> Sink:
        snk = open_sink(spec, classes=classes, palette=palette, fps=rate, masks=list(masks),
                        **(options or {}))
        opened.append(snk)
        return snk

    try:
        per_sinks: list[list[Sink]] = [[] for _ in names]
        shared: list[Sink] = []
        for s in sinks:
            if "{name}" in s:
                for i, name in enumerate(names):
                    per_sinks[i].append(op(s.replace("{name}", name), fps[i]))
            else:
                shared.append(op(s, fps[0] if fps else None))
    except BaseException:
        for snk in opened:
            snk.close()
        raise
    per: list[Sink | None] = [
        None if not group else group[0] if len(group) == 1 else TeeSink(group)
        for group in per_sinks
    ]
    return Fanout(per, shared, opened)
