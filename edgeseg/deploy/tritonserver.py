"""Start and stop a local ``tritonserver`` (the binary inside the nvidia-pytriton wheel).

The wheel carries a real Triton Inference Server with the Python backend only. It is installed
with ``pip install --no-deps nvidia-pytriton`` (its Python package pins numpy < 2; only the
binary is used, the package is never imported). Launching it needs what pytriton's own launcher
does (``pytriton/triton.py``, ``pytriton/server/triton_server.py``):

* ``LD_LIBRARY_PATH``: the wheel's bundled ``nvidia_pytriton.libs``, plus the directory of this
  interpreter's ``libpython3.X.so`` (the Python backend stub links it);
* ``--backend-directory`` with ``python/`` holding ``libtriton_python.so``,
  ``triton_python_backend_utils.py`` and the ``triton_python_backend_stub`` built for this
  Python version (``python_backend_stubs/3.X/``), linked here into a scratch directory;
* ``PATH`` starting with this interpreter's ``bin``: the stub's embedded Python finds its
  prefix from ``python3`` on PATH, so a virtualenv's site-packages (edgeseg, onnxruntime) are
  the ones the models import.

Servers bind 127.0.0.1 on free ports; readiness is polled in a bounded loop.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError, MissingDependencyError

__all__ = ["TritonServer", "find_tritonserver", "free_port"]

INSTALL_HINT = "pip install --no-deps nvidia-pytriton (x86-64 / aarch64 Linux)"
ENV_DIST = "EDGESEG_TRITONSERVER_DIR"  # an unpacked pytriton/tritonserver directory


@dataclass(frozen=True)
class ServerDist:
    binary: Path
    backends: Path
    stub: Path
    libs: Path


def find_tritonserver() -> ServerDist:
    """The tritonserver binary, Python backend, stub for this Python and bundled libraries."""
    env = os.environ.get(ENV_DIST)
    if env:
        root = Path(env)
    else:
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError("tritonserver (nvidia-pytriton wheel)", INSTALL_HINT)
        root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    dist = ServerDist(
        binary=root / "bin" / "tritonserver",
        backends=root / "backends",
        stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
        libs=root.parent.parent / "nvidia_pytriton.libs",
    )
    for what, path in (("tritonserver binary", dist.binary), ("Python backend", dist.backends /
                       "python" / "libtriton_python.so"), (f"Python {version} stub", dist.stub)):
        if not path.is_file():
            raise EdgesegError(f"{what} not found at {path}: reinstall with {INSTALL_HINT}")
    return dist


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TritonServer:
    """A tritonserver process on 127.0.0.1 serving ``repository``; a context manager.

    Args:
        repository: the model repository.
        http_port, grpc_port: default free ports.
        log_path: server log file (default: in the scratch directory; read it with :meth:`log`).
        ready_timeout_s: how long :meth:`start` waits for /v2/health/ready.
        extra_args: more tritonserver flags.
    """

    def __init__(
        self,
        repository: str | Path,
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        log_path: str | Path | None = None,
        ready_timeout_s: float = 120.0,
        extra_args: list[str] | None = None,
    ) -> None:
        self.repository = Path(repository)
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.ready_timeout_s = ready_timeout_s
        self.extra_args = list(extra_args or [])
        self._scratch: Path | None = None
        self._log_path = Path(log_path) if log_path else None
        self._log_file: Any = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _backends(self, dist: ServerDist, scratch: Path) -> Path:
        """A backend directory whose python/ has the stub for this Python (links, no copies)."""
        py = scratch / "backends" / "python"
        py.mkdir(parents=True)
        for f in (dist.backends / "python").iterdir():
            (py / f.name).symlink_to(f)
        (py / "triton_python_backend_stub").symlink_to(dist.stub)
        return py.parent

    def environment(self, dist: ServerDist) -> dict[str, str]:
        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        paths = [p for p in (libdir, str(dist.libs), env.get("LD_LIBRARY_PATH", "")) if p]
        env["LD_LIBRARY_PATH"] = ":".join(paths)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        return env

    def start(self) -> TritonServer:
        dist = find_tritonserver()
        self._scratch = Path(tempfile.mkdtemp(prefix="edgeseg-tritonserver-"))
        backends = self._backends(dist, self._scratch)
        log_path = self._log_path or self._scratch / "tritonserver.log"
        self._log_path = log_path
        cmd = [
            str(dist.binary), "--model-repository", str(self.repository.resolve()),
            "--backend-directory", str(backends),
            "--http-address", "127.0.0.1", "--http-port", str(self.http_port),
            "--grpc-address", "127.0.0.1", "--grpc-port", str(self.grpc_port),
            "--allow-metrics", "false", "--exit-timeout-secs", "10", *self.extra_args,
        ]
        self._log_file = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.environment(dist))
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log()[-2000:]
                self.stop()
                raise EdgesegError(f"tritonserver exited with {self.proc.returncode}: {tail}")
            if self.ready():
                return self
            time.sleep(0.25)
        tail = self.log()[-2000:]
        self.stop()
        raise EdgesegError(f"tritonserver not ready after {self.ready_timeout_s:.0f} s: {tail}")

    def ready(self) -> bool:
        try:
            url = f"http://{self.http_url}/v2/health/ready"
            with urllib.request.urlopen(url, timeout=1.0) as r:  # loopback only
                return bool(r.status == 200)
        except OSError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        if self._log_path is None or not self._log_path.is_file():
            return ""
        return self._log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch / "backends", ignore_errors=True)

    def __enter__(self) -> TritonServer:  # noqa: PYI034 - start() returns self
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
