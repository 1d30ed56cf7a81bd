"""The one-command CPU demo: synthetic scenes -> train -> eval -> ONNX -> INT8 -> bench -> run.

Every step calls the same library function its command does, so the demo is also an
end-to-end check of the toolkit. Results land in one folder (default outputs/).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError

__all__ = ["DemoSettings", "run_demo", "write_synthetic_video"]


@dataclass(frozen=True)
class DemoSettings:
    model: str = "desanet-hn"
    height: int = 128  # training crop and scene size (CPU-sized; the paper uses 1024x2048)
    width: int = 256
    train_images: int = 160
    val_images: int = 24
    recipe: str = "cpu-quick"  # edgeseg.train.config.RECIPES: AdamW, batch 4
    iters: int | None = None  # None: the recipe's (with a budget: at most this many)
    # Training wall time: on a slow CPU the schedule shrinks to fit (the whole demo, install
    # included, within 10 minutes on 2 AVX2 cores: docs/benchmarks.md, "edgeseg demo"); a
    # fast one stops at the recipe's iters.
    time_budget_s: float | None = 300.0
    warmup_iters: int | None = 30  # of ~280 iterations on 2 AVX2 cores; it times the budget
    batch: int | None = None
    calib_images: int = 32
    video_frames: int = 48
    bench_seconds: float = 1.0
    seed: int = 0

    @classmethod
    def quick(cls) -> DemoSettings:
        """A minutes-long variant for tests: same steps, tiny sizes."""
        return cls(height=64, width=128, train_images=24, val_images=6, iters=4, batch=2,
                   calib_images=8, video_frames=6, bench_seconds=0.5, time_budget_s=None,
                   warmup_iters=2)


def write_synthetic_video(path: Path, frames: int, height: int, width: int, seed: int = 0,
                          fps: float = 10.0) -> Path:
    """A drive through synthetic scenes as an .mp4 (one scene per frame)."""
    import cv2

    from edgeseg.data.synthetic import generate_scene, scene_rng

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    try:
        for i in range(frames):
            rgb, _ = generate_scene(scene_rng(seed, "test", i), height, width)
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


Step = Callable[[str], None]
TrainStep = Callable[[int, int, float], None]


def run_demo(out: Path, settings: DemoSettings = DemoSettings(), *,
             on_step: Step | None = None, on_train: TrainStep | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every stage; returns the summary also written to ``out/summary.json``.

    ``on_step(stage)`` starts each stage; ``on_train(iteration, total, loss)`` follows training.
    """
    from edgeseg.bench.report import run_bench, strip_samples
    from edgeseg.data.synthetic import write_synthetic_cityscapes
    from edgeseg.deploy.export import export
    from edgeseg.deploy.quantize import calibrate
    from edgeseg.runtime import open_segmenter
    from edgeseg.train.config import load_train_config
    from edgeseg.train.evaluate import evaluate
    from edgeseg.train.loop import train
    from edgeseg.video.run import run

    s = settings
    if out.exists() and not out.is_dir():
        raise EdgesegError(f"--out {out} is a file: give a folder for the demo's results")
    out.mkdir(parents=True, exist_ok=True)
    data, run_dir = out / "data", out / "run"
    timings: dict[str, float] = {}
    summary: dict[str, Any] = {"settings": s.__dict__, "outputs": {}}

    def stage(name: str) -> Callable[[], None]:
        if on_step:
            on_step(name)
        t0 = time.perf_counter()
        return lambda: timings.__setitem__(name, round(time.perf_counter() - t0, 1))

    done = stage("synthetic scenes")
    write_synthetic_cityscapes(data, train=s.train_images, val=s.val_images, height=s.height,
                               width=s.width, seed=s.seed, overwrite=True)
    done()

    done = stage("train")
    cfg = load_train_config(
        None, recipe=s.recipe, model=s.model, data=str(data), out=str(run_dir),
        iters=s.iters, batch=s.batch, seed=s.seed, val_split="", time_budget_s=s.time_budget_s,
        warmup_iters=s.warmup_iters,
        **_crop(s),
    )
    total = [cfg.iters]
    result = train(cfg, log=log, on_schedule=lambda n: total.__setitem__(0, n), on_step=(
        (lambda it, info: on_train(it, total[0], info["total"])) if on_train else None))
    ckpt = result.checkpoint
    summary["train"] = {"iterations": result.iteration, "final_loss": result.losses[-1],
                        "seconds": round(result.seconds, 1), "schedule": result.schedule,
                        "crop": list(cfg.crop)}
    busy = _busy_note(result.iteration, cfg.iters, s.time_budget_s)  # cfg.iters: the cap
    if busy:
        summary["train"]["note"] = busy
        log(f"note: {busy}")
    done()

    done = stage("eval")
    ev = evaluate(ckpt, data, "val")
    (out / "eval.json").write_text(json.dumps(ev, indent=2))
    summary["eval"] = {"miou": ev["miou"], "pixel_accuracy": ev["pixel_accuracy"]}
    done()

    done = stage("export onnx")
    onnx_path = out / "model.onnx"
    exp = export(onnx_path, weights=ckpt, fmt="onnx", profile="x86-cpu", height=s.height,
                 width=s.width, dcn="portable")
    summary["export"] = {"parity": exp.get("parity"), "path": str(onnx_path)}
    done()

    done = stage("calibrate int8")
    cal = calibrate(images=data, out=out / "int8", onnx=onnx_path, profile="x86-cpu",
                    num=s.calib_images, seed=s.seed, log=lambda m: None)
    (out / "calibrate.json").write_text(json.dumps(cal, indent=2, default=str))
    int8_path = Path(cal["outputs"]["qdq_onnx"])
    summary["calibrate"] = {k: cal.get(k) for k in ("agreement", "miou_fp32", "miou_int8", "speedup")}
    done()

    done = stage("bench fp32 vs int8")
    bench = run_bench(onnx=onnx_path, onnx_int8=int8_path, profile="x86-cpu", height=s.height,
                      width=s.width, compare="onnxruntime:fp32,onnxruntime:int8,torch:fp32",
                      weights=None, duration_s=s.bench_seconds, warmup_s=0.5,
                      reference_s=min(0.5, s.bench_seconds / 4),
                      warn=lambda m: log(f"warning: {m}"), samples=True)
    bench["plots"] = _plots(bench, out / "plots", log)
    bench = strip_samples(bench)
    (out / "bench.json").write_text(json.dumps(bench, indent=2, default=str))
    summary["bench"] = bench
    done()

    done = stage("run on video")
    video = write_synthetic_video(out / "input.mp4", s.video_frames, s.height * 2, s.width * 2, s.seed)
    seg = open_segmenter(onnx_path)
    rs = run(seg, str(video), str(out / "overlay.mp4"), visualize="overlay")
    summary["run"] = rs.to_dict()
    done()

    summary["timings_s"] = timings
    summary["outputs"] = {p.name: str(p) for p in sorted(out.iterdir()) if p.is_file()}
    summary["outputs"].update({f"plots/{Path(p).name}": p for p in bench["plots"]})
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _crop(s: DemoSettings) -> dict[str, Any]:
    """The recipe's crop when it fits the scenes (random crops of them), else the scene size."""
    from edgeseg.train.config import RECIPES

    crop = RECIPES.get(s.recipe, {}).get("crop")
    if crop and crop[0] <= s.height and crop[1] <= s.width:
        return {}
    return {"crop": (s.height, s.width)}


def _plots(bench: dict[str, Any], folder: Path, log: Callable[[str], None]) -> list[str]:
    """Latency histogram, CIO bars and the FPS comparison as PNGs (matplotlib is optional)."""
    try:
        from edgeseg.bench.plots import write_plots

        return [str(p) for p in write_plots(bench, folder)]
    except ImportError:
        log("no plots: matplotlib is not installed (pip install 'edgeseg[plot]')")
        return []


# the recipe's val mIoU needs most of its iterations (docs/benchmarks.md, the recipe records):
# below this share of them, the demo says the numbers are not what the recipe learns
BUSY_SHARE = 0.5


def _busy_note(done: int, recipe_iters: int, budget_s: float | None) -> str | None:
    """A line for a budgeted demo that fitted under half the recipe's iterations."""
    if budget_s is None or done >= BUSY_SHARE * recipe_iters:
        return None
    return (f"the {budget_s:g} s training budget fitted {done} of the recipe's {recipe_iters} "
            "iterations (a slow or busy CPU): the mIoU below is what that many steps learn, "
            "not what the recipe reaches")
