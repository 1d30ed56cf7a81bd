"""Library behind `edgeseg run`: open a model, then segment a source into a sink.

``run(open_model(...), "video.mp4", "out.mp4")`` is the whole command as a function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError
from edgeseg.runtime.base import Segmenter
from edgeseg.video.pipeline import RunSummary, run_pipeline
from edgeseg.video.reader import FrameSource, Reconnect

__all__ = ["load_segmenter", "pick_model", "run"]


def pick_model(
    weights: Path | None = None, onnx: Path | None = None, engine: Path | None = None,
    *, backend: str | None = None, url: str | None = None,
) -> tuple[Path | str, str]:
    """``(path, backend)`` of exactly one of ``--weights`` / ``--onnx`` / ``--engine``;
    ``(url, "triton")`` for ``--backend triton`` (a model on a Triton server); ``(onnx,
    "tensorrt")`` for ``--onnx`` with ``--backend tensorrt`` (an engine from the cache)."""
    given = [(p, b) for p, b in ((weights, "torch"), (onnx, "onnxruntime"), (engine, "tensorrt"))
             if p is not None]
    if backend == "triton" or url is not None:
        if backend not in (None, "triton"):
            raise EdgesegError(f"--url goes with --backend triton, not {backend}")
        if given:
            raise EdgesegError("--backend triton runs the server's model: leave out "
                               "--weights, --onnx and --engine")
        from edgeseg.runtime.triton_backend import DEFAULT_URL

        return url or DEFAULT_URL, "triton"
    if len(given) != 1:
        raise EdgesegError("give exactly one of --weights, --onnx, --engine (or --backend triton)")
    if backend == "tensorrt" and onnx is not None:  # built, or reused from the engine cache
        return onnx, "tensorrt"
    if backend not in (None, given[0][1]):
        raise EdgesegError(f"--backend {backend}: triton (a server), or tensorrt with --onnx "
                           f"(an engine built from it); {given[0][0].name} runs on {given[0][1]}")
    return given[0]


def load_segmenter(
    path: Path | str, backend: str, profile: str | None = None, device: str = "auto",
    say: Callable[[str], Any] | None = None, **backend_opts: Any,
) -> Segmenter:
    """Open the model. A ``profile`` is validated and sets the input size of a checkpoint (an
    ONNX or engine keeps its own). A checkpoint runs on ``device`` (auto: CUDA when torch sees
    a GPU), with the argmax there on CUDA; an engine on that CUDA device. An ONNX with
    ``backend="tensorrt"`` runs through the engine cache: a matching engine is reused, else one
    is built (``say`` gets one line saying which, and why).
    """
    from edgeseg.runtime import open_segmenter
    from edgeseg.runtime.devices import parse_device

    if backend == "tensorrt" and Path(path).suffix.lower() == ".onnx":
        from edgeseg.deploy.engine_export import engine_for_onnx
        from edgeseg.profiles import load_profile

        prof = load_profile(profile) if profile is not None else None
        precision = prof.deploy.precision if prof is not None else "fp16"
        path = engine_for_onnx(Path(path), precision, prof, say=say)
    opts: dict[str, Any] = dict(backend_opts)  # e.g. model, token (triton)
    dev = parse_device(device)
    if backend == "torch":
        opts["device"] = str(dev)
        if dev.type == "cuda":  # labels, not 19-channel logits, cross to the host
            opts["argmax"] = True
    elif backend == "tensorrt" and dev.type == "cuda":
        opts["device"] = dev.index
    elif device != "auto" and dev.type != "cpu":
        raise EdgesegError(f"--device {device}: {backend} runs on the CPU here")
    if profile is not None:
        from edgeseg.profiles import load_profile

        prof = load_profile(profile)
        if backend == "torch":
            opts["input_hw"] = prof.deploy.input_hw
    return open_segmenter(path, backend=backend, **opts)


def run(
    segmenter: Segmenter,
    source: str | FrameSource,
    sink: str | Sequence[str] = "none",
    *,
    visualize: str = "overlay",
    alpha: float = 0.5,
    max_frames: int | None = None,
    masks: Sequence[str] = ("color",),
    legend: bool = True,
    hud: bool = True,
    reconnect: int = 5,
    warn: Callable[[str], Any] | None = None,
    progress: Callable[[str, int | None], AbstractContextManager[Callable[..., Any]]] | None = None,
    sink_options: dict[str, Any] | None = None,
) -> RunSummary:
    """Run ``segmenter`` on ``source`` into ``sink`` (see :func:`run_pipeline`).

    ``progress(name, total)`` is a context manager yielding a ``bar(n, info=...)`` callback
    (the CLI passes its rich bar); without it nothing is shown. ``sink`` may be a list (each
    frame goes to all); ``sink_options`` reach registered kinds (the web sink's token ...)."""

    src = source if isinstance(source, FrameSource) else FrameSource(
        source, warn=warn, reconnect=Reconnect(attempts=reconnect))
    src.open()
    total = src.expected
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames
    kw: dict[str, Any] = {"legend": legend, "hud": hud, "masks": masks, "warn": warn,
                          "sink_options": sink_options}
    sink = sink if isinstance(sink, str) else list(sink)
    if progress is None:
        return run_pipeline(segmenter, src, sink, visualize, alpha, max_frames, **kw)
    with progress("run", total) as bar:
        return run_pipeline(segmenter, src, sink, visualize, alpha, max_frames, bar, **kw)
