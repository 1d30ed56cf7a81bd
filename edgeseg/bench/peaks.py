"""This machine's compute peaks, the roofline's denominators: dense fp32 matmul (torch's
``mm``, numpy's ``@`` or onnxruntime's ``MatMul``) and onnxruntime's u8s8 ``MatMulInteger``.

A ceiling must bound every measurement, so the fp32 roof of a CPU is the faster of torch's and
onnxruntime's kernels (:func:`fp32_peak`): onnxruntime's MLAS sgemm measured 190 GFLOP/s where
torch measured 93 on one AVX-512 thread, and a model run by onnxruntime beat a torch-only roof.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgeseg.bench.timing import time_callable
from edgeseg.errors import EdgesegError

__all__ = ["fp32_peak", "int8_matmul_gops", "matmul_gflops"]


def _numpy_threads() -> int | None:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [int(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else None


def matmul_gflops(
    n: int = 1024,
    dtype: str = "float32",
    seconds: float = 1.0,
    backend: str = "auto",
    device: str = "cpu",
    threads: int | None = None,
) -> dict[str, Any]:
    """This machine's dense matmul throughput, the denominator of the 'efficiency' figure.

    Times ``n x n @ n x n`` (``2 n^3`` FLOP per call) for about ``seconds`` after a short
    warm-up and reports the median rate.

    Args:
        backend: ``torch`` (the runtime the model uses), ``numpy``, ``onnxruntime`` (one
            ``MatMul`` with a constant weight, float32 only) or ``auto`` (torch when
            importable).
        device: torch device, e.g. ``cuda``; numpy and onnxruntime are CPU only.
        threads: intra-op threads for this measurement only (the model run's count); None
            keeps torch's setting (onnxruntime: torch's count, so both kernels compare alike).

    Returns:
        ``{"gflops", "backend", "device", "dtype", "n", "threads", "iters", "seconds"}``;
        ``threads`` is the intra-op (torch) or BLAS (numpy, via threadpoolctl) thread count,
        None where unknown.
    """
    if n < 1 or seconds <= 0:
        raise EdgesegError("matmul_gflops needs n >= 1 and seconds > 0")
    requested = threads
    if backend == "auto":
        try:
            import torch

            backend = "torch"
        except ImportError:  # pragma: no cover - torch is a dependency
            backend = "numpy"
    sync: Callable[[], Any] | None = None
    threads: int | None
    if backend == "torch":
        import torch

        try:
            tdtype = getattr(torch, dtype)
        except AttributeError as e:
            raise EdgesegError(f"unknown torch dtype {dtype!r}") from e
        gen = torch.Generator(device="cpu").manual_seed(0)
        a = torch.randn(n, n, generator=gen).to(device=device, dtype=tdtype)
        b = torch.randn(n, n, generator=gen).to(device=device, dtype=tdtype)
        if a.device.type == "cuda":
            sync = torch.cuda.synchronize
        threads = torch.get_num_threads() if a.device.type == "cpu" else None

        def fn() -> Any:
            return torch.mm(a, b)

        if requested is not None and a.device.type == "cpu" and requested != threads:
            torch.set_num_threads(requested)
            try:
                return matmul_gflops(n, dtype, seconds, backend, device)
            finally:
                torch.set_num_threads(int(threads or 1))

    elif backend == "numpy":
        if device != "cpu":
            raise EdgesegError("numpy matmul runs on the CPU only")
        rng = np.random.default_rng(0)
        an = rng.standard_normal((n, n)).astype(dtype)
        bn = rng.standard_normal((n, n)).astype(dtype)
        threads = _numpy_threads()

        def fn() -> Any:
            return an @ bn

    elif backend == "onnxruntime":
        if device != "cpu" or dtype != "float32":
            raise EdgesegError("the onnxruntime matmul peak is float32 on the CPU only")
        rng = np.random.default_rng(0)
        b32 = rng.standard_normal((n, n)).astype(np.float32)
        sess, backend = _ort_matmul("MatMul", b32, n, requested if requested else _torch_threads())
        feed = {"a": rng.standard_normal((n, n)).astype(np.float32)}
        threads = sess.get_session_options().intra_op_num_threads or None

        def fn() -> Any:
            return sess.run(None, feed)

    else:
        raise EdgesegError(f"backend must be torch, numpy, onnxruntime or auto, got {backend!r}")

    res = time_callable(
        fn,
        warmup_s=min(0.2, seconds / 4),
        min_warmup=2,
        duration_s=seconds,
        min_iters=3,
        sync=sync,
    )
    flop = 2.0 * n**3
    return {
        "gflops": flop / (res.stats.p50_ms * 1e-3) / 1e9,
        "backend": backend,
        "device": device,
        "dtype": dtype,
        "n": n,
        "threads": threads,
        "iters": res.stats.n,
        "seconds": res.wall_s,
    }


def int8_matmul_gops(
    n: int = 1024, seconds: float = 1.0, threads: int | None = None
) -> dict[str, Any]:
    """This CPU's integer matmul throughput in onnxruntime: the INT8 roofline peak here.

    Times one ``MatMulInteger`` (uint8 activations x int8 constant weights -> int32, the u8s8
    kernel onnxruntime's quantized convolutions use on x86) of ``n x n @ n x n`` (``2 n^3``
    integer ops per call) for about ``seconds`` and reports the median rate. ``threads``:
    onnxruntime intra-op threads (default: onnxruntime's own choice, as the bench sessions).

    Returns:
        ``{"gflops", "backend", "device", "dtype", "n", "threads", "iters", "seconds"}`` with
        ``gflops`` in giga integer ops per second (the same keys as :func:`matmul_gflops`).
    """
    if n < 1 or seconds <= 0:
        raise EdgesegError("int8_matmul_gops needs n >= 1 and seconds > 0")
    rng = np.random.default_rng(0)
    sess, backend = _ort_matmul(
        "MatMulInteger", rng.integers(-127, 128, (n, n), dtype=np.int8), n, threads)
    feed = {"a": rng.integers(0, 256, (n, n), dtype=np.uint8)}

    def fn() -> Any:
        return sess.run(None, feed)

    res = time_callable(fn, warmup_s=min(0.2, seconds / 4), min_warmup=2, duration_s=seconds,
                        min_iters=3)
    return {
        "gflops": 2.0 * n**3 / (res.stats.p50_ms * 1e-3) / 1e9,
        "backend": f"{backend} u8s8",
        "device": "cpu",
        "dtype": "int8",
        "n": n,
        "threads": threads or sess.get_session_options().intra_op_num_threads or None,
        "iters": res.stats.n,
        "seconds": res.wall_s,
    }


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return torch.get_num_threads()


def _ort_matmul(op: str, weight: np.ndarray, n: int, threads: int | None) -> tuple[Any, str]:
    """An onnxruntime CPU session of one ``a @ weight`` (``op``: ``MatMul`` float32 or
    ``MatMulInteger`` uint8 x int8 -> int32), the weight a constant as in a model's graph;
    returns (session, "onnxruntime <version> <op>")."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as e:  # pragma: no cover - both are dependencies
        raise EdgesegError(f"the {op} peak needs onnx and onnxruntime ({e.name})") from None
    integer = op == "MatMulInteger"
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["y"])], f"{op}_peak",
        [helper.make_tensor_value_info(
            "a", TensorProto.UINT8 if integer else TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info(
            "y", TensorProto.INT32 if integer else TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(weight, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess, f"onnxruntime {ort.__version__} {op}"


def fp32_peak(seconds: float = 1.0, device: str = "cpu", threads: int | None = None,
              n: int = 1024) -> dict[str, Any]:
    """The fp32 compute roof of ``device``: on the CPU the faster of torch's ``mm`` and
    onnxruntime's ``MatMul`` at the same threads (each for ``seconds / 2``), so a model run by
    either runtime stays under its ceiling; on CUDA torch's. The keys of
    :func:`matmul_gflops`, plus ``candidates`` (backend -> GFLOP/s)."""
    if device != "cpu":
        return matmul_gflops(n, seconds=seconds, backend="torch", device=device, threads=threads)
    runs = [matmul_gflops(n, seconds=seconds / 2, backend=b, threads=threads)
            for b in ("torch", "onnxruntime")]
    best = max(runs, key=lambda m: m["gflops"])
    return {**best, "candidates": {m["backend"]: m["gflops"] for m in runs}}
