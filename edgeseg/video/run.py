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
    model: str | Path | None = None, weights: Path | None = None, onnx: Path | None = None,
    engine: Path | None = None, *, backend: str | None = None, url: str | None = None,
    triton_model: str | None = None,
) -> tuple[Path | str, str, dict[str, Any]]:
    """``(path, backend, remote options)`` of the one model (:func:`resolve_model`):
    a checkpoint (torch), ONNX (onnxruntime; tensorrt with ``backend="tensorrt"``: an engine
    from the cache) or engine (tensorrt); ``(url, "triton", {"model": name})`` for a model on
    a Triton server (``--model triton://HOST:PORT/NAME``, or ``--backend triton --url``)."""
    from edgeseg.artifacts.resolve import resolve_model, triton_endpoint

    remote = triton_endpoint(model, url, triton_model)
    if remote is not None:
        if backend not in (None, "triton"):
            raise EdgesegError(f"--model {model} is served by Triton, not --backend {backend}")
        return remote[0], "triton", {"model": remote[1]}
    if backend == "triton" or url is not None:
        if backend not in (None, "triton"):
            raise EdgesegError(f"--url goes with --backend triton, not {backend}")
        if model is not None or weights or onnx or engine:
            raise EdgesegError("--backend triton runs the server's model: leave out the local "
                               "--model (or give --model triton://HOST:PORT/NAME)")
        from edgeseg.runtime.triton_backend import DEFAULT_URL

        return url or DEFAULT_URL, "triton", {"model": triton_model}
    if triton_model is not None:
        raise EdgesegError("--triton-model goes with --backend triton (or give --model "
                           "triton://HOST:PORT/NAME)")
    ref = resolve_model(model, weights=weights, onnx=onnx, engine=engine, command="run")
    assert ref is not None and ref.path is not None
    if backend == "tensorrt" and ref.kind == "onnx":  # built, or reused from the engine cache
        return ref.path, "tensorrt", {}
    if backend not in (None, ref.backend):
        raise EdgesegError(f"--backend {backend}: triton (a server), or tensorrt with an ONNX "
                           f"--model (an engine built from it); {ref.path.name} runs on "
                           f"{ref.backend}")
    return ref.path, ref.backend, {}


def load_segmenter(
    path: Path | str, backend: str, profile: Any = None, device: str = "auto",
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

    from edgeseg.profiles import load_profile

    prof = load_profile(profile) if profile is not None else None  # read once, used twice
    if backend == "tensorrt" and Path(path).suffix.lower() == ".onnx":
        from edgeseg.deploy.engine_export import engine_for_onnx

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
    if prof is not None and backend == "torch":
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
