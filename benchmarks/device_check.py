"""Everything that needs CUDA, in one run of at most ~8 minutes, printing one JSON report.

Run it on any machine with an NVIDIA GPU (``bash benchmarks/device_check.sh``): it uses only what
the project carries (no package index, no downloads, random-init models and synthetic frames).
Each check is timed and guarded: a failing check records its one-line error and the rest go on.

Checks:
1. torch CUDA inference, fp32 / fp16 / bf16 at 1024x2048, both variants: FPS and peak memory.
2. native (torchvision) vs portable (grid_sample) deformable conv parity on CUDA.
3. one CUDA training step (loss finite, weights change).
4. the CUDA Segmenter (runtime.torch_backend) on a frame.
5. `edgeseg bench` on CUDA (--json: latency and memory stats).
6. `edgeseg run` on a synthetic video through CUDA.
7. TensorRT, torch2trt and the DeformConv plugin, when installed (`edgeseg doctor --json`).
8. TensorRT engines: both DCN forms (native = the ModulatedDeformConv2d plugin, portable),
   FP16 and INT8 (calibrated on synthetic frames), through the ONNX parser (`--format engine`)
   and through torch2trt with the plugin converter (`--format torch2trt`); each engine's labels
   against torch's. A missing module is reported as "skipped (no X)", never as a failure.

Without CUDA it says so and exits 0 (nothing here can run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

BUDGET_S = float(os.environ.get("DEVICE_CHECK_BUDGET_S", "480"))
HW = (1024, 2048)
VARIANTS = ("desanet-hn", "desanet-rn")
START = time.monotonic()


def _left() -> float:
    return BUDGET_S - (time.monotonic() - START)


def missing(*modules: str) -> str | None:
    """``skipped (no X)`` for the first module that cannot be imported here, else None."""
    import importlib.util

    for m in modules:
        if importlib.util.find_spec(m) is None:
            return f"skipped (no {m})"
    return None


def check(report: dict[str, Any], name: str, fn: Callable[[], Any], need_s: float = 20) -> None:
    if _left() < need_s:
        report["checks"][name] = {"status": "skipped", "reason": f"time budget ({_left():.0f} s left)"}
        return
    t0 = time.monotonic()
    try:
        result = fn()
        if isinstance(result, str):  # a "skipped (no X)" line
            report["checks"][name] = {"status": "skipped", "reason": result}
            return
        report["checks"][name] = {"status": "ok", "seconds": round(time.monotonic() - t0, 1),
                                  **(result or {})}
    except Exception as e:  # noqa: BLE001 - record and go on
        report["checks"][name] = {"status": "failed", "error": f"{type(e).__name__}: {e}",
                                  "where": traceback.format_exc().splitlines()[-3:]}


def _fps(model: Any, x: Any, dtype: Any, seconds: float = 3.0) -> dict[str, Any]:
    import torch

    with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
        for _ in range(3):
            model(x)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            model(x)
            n += 1
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    return {"fps": round(n / dt, 2), "ms": round(1e3 * dt / n, 3), "iters": n,
            "peak_mem_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)}


def inference() -> dict[str, Any]:
    import torch

    from edgeseg.models.desanet import build_model

    out: dict[str, Any] = {"size": list(HW)}
    x = torch.randn(1, 3, *HW, device="cuda")
    for v in VARIANTS:
        m = build_model(v, aux=False).eval().cuda()
        out[v] = {name: _fps(m, x, dt, seconds=2.0) for name, dt in
                  (("fp32", None), ("fp16", torch.float16), ("bf16", torch.bfloat16))}
        del m
        torch.cuda.empty_cache()
    return out


def dcn_parity() -> dict[str, Any]:
    import torch

    from edgeseg.models.deform import DeformableConv2d

    torch.manual_seed(0)
    m = DeformableConv2d(64, 64, impl="native").cuda().eval()
    torch.nn.init.normal_(m.offset.weight, std=0.1)
    x = torch.randn(1, 64, 128, 256, device="cuda")
    with torch.inference_mode():
        a = m(x)
        m.impl = "portable"
        b = m(x)
    diff = (a - b).abs().max().item()
    if diff > 1e-3:
        raise AssertionError(f"native vs portable max |diff| {diff:.2e} > 1e-3")
    return {"max_abs_diff": diff}


def train_step() -> dict[str, Any]:
    import torch

    from edgeseg.models.desanet import build_model

    torch.manual_seed(0)
    m = build_model("desanet-rn", aux=False).cuda().train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    x = torch.randn(2, 3, 256, 512, device="cuda")
    y = torch.randint(0, 19, (2, 256, 512), device="cuda")
    before = [p.detach().clone() for p in m.parameters()]
    out = m(x)
    logits = out[0] if isinstance(out, (tuple, list)) else out
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    opt.step()
    changed = sum(not torch.equal(a, b) for a, b in zip(before, m.parameters()))
    if not torch.isfinite(loss) or changed == 0:
        raise AssertionError(f"loss {loss.item()}, {changed} parameters changed")
    return {"loss": float(loss), "parameters_changed": changed}


def segmenter(ckpt: Path) -> dict[str, Any]:
    import numpy as np

    from edgeseg.runtime import open_segmenter

    seg = open_segmenter(ckpt)
    frame = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    labels = seg(frame)
    return {"describe": seg.describe(), "labels_shape": list(labels.shape)}


def _cli(*args: str, timeout: float) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "edgeseg", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"edgeseg {args[0]} exit {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return json.loads(proc.stdout) if "--json" in args else {"stdout_tail": proc.stdout[-500:]}


def bench(ckpt: Path) -> dict[str, Any]:
    r = _cli("bench", "--model", str(ckpt), "--height", "512", "--width", "1024",
             "--precision", "fp16", "--duration-s", "3", "--json", timeout=max(30, _left() - 60))
    return {"report": r}


def run_video(ckpt: Path, tmp: Path) -> dict[str, Any]:
    import cv2
    import numpy as np

    video = tmp / "clip.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (1024, 512))
    rng = np.random.default_rng(0)
    for _ in range(30):
        w.write(rng.integers(0, 255, (512, 1024, 3), dtype=np.uint8))
    w.release()
    out = tmp / "out.mp4"
    r = _cli("run", "--model", str(ckpt), "--source", str(video), "--sink", str(out),
             "--max-frames", "30", "--json", timeout=max(30, _left() - 30))
    return {"report": r, "output_bytes": out.stat().st_size if out.exists() else 0}


def doctor() -> dict[str, Any]:
    return {"report": _cli("doctor", "--json", timeout=60)}


ENGINE_BUILDS = [(fmt, dcn, prec) for fmt in ("engine", "torch2trt")
                 for dcn in ("native", "portable") for prec in ("fp16", "int8")]


def engine_vs_torch(ckpt: Path, tmp: Path, fmt: str, dcn: str, precision: str) -> Any:
    """One engine built by `edgeseg export`, its labels against torch's on synthetic frames."""

    need = ("tensorrt", "torch2trt") if fmt == "torch2trt" else ("tensorrt",)
    if (why := missing(*need)) is not None:
        return why
    out = tmp / f"{fmt}.{dcn}.{precision}.engine"
    args = ["export", "--model", str(ckpt), "--format", fmt, "--dcn", dcn, "--precision",
            precision, "--out", str(out)]
    if precision == "int8":
        args += ["--images", str(calibration_images(tmp)), "--calib-images", "8"]
    _cli(*args, timeout=max(60, _left() - 30))
    from edgeseg.runtime import open_segmenter

    engine, ref = open_segmenter(out), open_segmenter(ckpt, backend="torch")
    agree = [float((engine(f) == ref(f)).mean()) for f in synthetic_frames()]
    return {"engine": out.name, "label_agreement": round(min(agree), 4),
            "within_tolerance": min(agree) >= (0.97 if precision == "int8" else 0.99)}


def synthetic_frames(n: int = 4) -> list[Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:1024]
    base = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    return [np.clip(base.astype(int) + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
            for _ in range(n)]


def calibration_images(tmp: Path) -> Path:
    import cv2

    folder = tmp / "calib"
    if not folder.is_dir():
        folder.mkdir()
        for i, f in enumerate(synthetic_frames(8)):
            cv2.imwrite(str(folder / f"{i}.png"), f)
    return folder


def main() -> int:
    report: dict[str, Any] = {"checks": {}, "budget_s": BUDGET_S}
    if (why := missing("torch")) is not None:
        print(json.dumps({**report, "skipped": why}, indent=2))
        return 0
    import torch

    if not torch.cuda.is_available():  # nothing here can run: say so, and it is no failure
        report["skipped"] = "skipped (no CUDA device visible to torch)"
        report["checks"] = {f"engine_{f}_{d}_{p}": {"status": "skipped", "reason":
                            missing("tensorrt") or "skipped (no CUDA)"} for f, d, p in ENGINE_BUILDS}
        print(json.dumps(report, indent=2))
        return 0
    report["gpu"] = {"name": torch.cuda.get_device_name(0),
                     "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
                     "torch": torch.__version__, "cuda": torch.version.cuda}
    from edgeseg.models.desanet import build_model
    from edgeseg.train.checkpoint import default_meta, save_model_only

    with tempfile.TemporaryDirectory(prefix="edgeseg-device-check-") as d:
        tmp = Path(d)
        ckpt = save_model_only(tmp / "rn.pt", build_model("desanet-rn", aux=False).eval(),
                               default_meta("desanet-rn", (512, 1024)))
        check(report, "inference_1024x2048", inference, need_s=90)
        check(report, "dcn_native_vs_portable", dcn_parity)
        check(report, "train_step", train_step)
        check(report, "segmenter", lambda: segmenter(ckpt))
        check(report, "bench", lambda: bench(ckpt), need_s=60)
        check(report, "run_video", lambda: run_video(ckpt, tmp), need_s=45)
        check(report, "doctor", doctor)
        for fmt, dcn, prec in ENGINE_BUILDS:
            check(report, f"engine_{fmt}_{dcn}_{prec}",
                  lambda f=fmt, d=dcn, p=prec: engine_vs_torch(ckpt, tmp, f, d, p), need_s=60)
    report["seconds"] = round(time.monotonic() - START, 1)
    print(json.dumps(report, indent=2, default=str))
    return 0 if all(c["status"] in ("ok", "skipped") for c in report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
