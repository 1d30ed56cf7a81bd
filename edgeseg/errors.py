"""The one exception type that commands turn into a one-line message and a non-zero exit."""

from __future__ import annotations


class EdgesegError(Exception):
    """A user-facing error: the message names the cause (file, key, expected value).

    Library code raises it for bad input; the CLI prints ``error: <message>`` and exits 2.
    Anything else is a bug and keeps its traceback.
    """


class MissingDependencyError(EdgesegError):
    """An optional dependency (TensorRT, torch2trt, CUDA, NVML, jtop) is not available."""

    def __init__(self, what: str, install: str, image: str | None = None) -> None:
        hint = f"; or use the docker image {image}" if image else ""
        super().__init__(f"{what} is not available: {install}{hint}")
        self.what = what
