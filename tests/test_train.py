"""Training loop: accuracy on synthetic scenes, resume, signals, DDP, evaluation maths."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeseg.artifacts.checkpoint import load_checkpoint
from edgeseg.errors import EdgesegError
from edgeseg.train.config import load_train_config
from edgeseg.metrics import ConfusionMatrix
from edgeseg.train.loop import train
from edgeseg.train.sampler import ResumableDistributedSampler

VENV_BIN = Path(sys.executable).parent


def _tiny_cfg(root: Path, out: Path, **kw):
    base = dict(
        model="desanet-hn", data=str(root), out=str(out), split="train", crop=(64, 128),
        batch=2, iters=4, lr=0.01, workers=0, seed=3, ckpt_every=0, val_split="",
    )
    base.update(kw)
    return load_train_config(None, **base)


def test_training_learns(trained_run, synthetic_root: Path) -> None:
    """The shared CPU run beats its own untrained start on val mIoU, and the loss falls."""
    from edgeseg.data.cityscapes import CLASSES, CityscapesDataset
    from edgeseg.models.desanet import build_model
    from edgeseg.train.evaluate import evaluate_model

    result, cfg = trained_run
    torch.manual_seed(cfg.seed)
    untrained = evaluate_model(build_model(cfg.model), CityscapesDataset(synthetic_root, "val"),
                               list(CLASSES))
    assert result.eval is not None and result.eval["images"] == 24
    assert result.eval["miou"] > untrained["miou"] + 0.05
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])
    lines = (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["iter"] == result.iteration


def test_acceptance_miou(trained_run, fully_trained: bool) -> None:
    """Issue 4: DESANet-HN trained on CPU from random init, synthetic scenes at 128x256 (the
    cpu-quick recipe; the run is the shared fixture), reaches val mIoU >= 0.35 over all 19
    classes. Measured: 0.375 after the recipe's 1000 iterations with ENet class weights on a
    2-core AMD EPYC (AVX2, float32; docs/benchmarks.md, "Training recipe at the demo's
    budget"); 1300 unweighted iterations reached 0.421 there, at 30% more fixture time."""
    from edgeseg.train.config import RECIPES

    result, cfg = trained_run
    if not fully_trained:
        pytest.skip(f"EDGESEG_TEST_ITERS={result.iteration} shortens the shared run")
    print(f"\nval mIoU {result.eval['miou']:.3f} after {result.iteration} iterations in "
          f"{result.seconds:.0f} s (recipe cpu-quick: {cfg.optimizer} lr {cfg.lr}, batch "
          f"{cfg.batch}, crop {cfg.crop[0]}x{cfg.crop[1]}, {cfg.warmup_iters} warm-up)")
    assert result.iteration == RECIPES["cpu-quick"]["iters"]
    assert result.eval["miou"] >= 0.35


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_reproduces_uninterrupted_losses(
    synthetic_root: Path, tmp_path: Path, optimizer: str
) -> None:
    """Paper SGD, and AdamW with warm-up (the cpu-quick recipe): moments and schedule resume."""
    kw = dict(rmi=True) if optimizer == "sgd" else dict(optimizer="adamw", warmup_iters=3)
    full = train(_tiny_cfg(synthetic_root, tmp_path / "full", **kw), log=lambda m: None)

    def interrupt(it: int, _info: dict) -> None:
        if it == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the loop saves after this iteration

    cut = train(_tiny_cfg(synthetic_root, tmp_path / "cut", **kw), on_step=interrupt,
                log=lambda m: None)
    assert cut.interrupted and cut.iteration == 2
    assert load_checkpoint(cut.checkpoint)["iteration"] == 2
    resumed = train(_tiny_cfg(synthetic_root, tmp_path / "cut", **kw),
                    resume=cut.checkpoint, log=lambda m: None)
    assert resumed.iteration == 4
    np.testing.assert_allclose(cut.losses + resumed.losses, full.losses, rtol=1e-6)


def test_non_finite_loss_stops_with_one_line(synthetic_root: Path, tmp_path: Path) -> None:
    cfg = _tiny_cfg(synthetic_root, tmp_path / "nan", lr=1e12, iters=6, rmi=False)
    with pytest.raises(EdgesegError, match="non-finite at iteration") as e:
        train(cfg, log=lambda m: None)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("native_bf16", [True, False])
def test_cpu_amp_is_bfloat16_where_the_cpu_has_it(
    synthetic_root: Path, tmp_path: Path, monkeypatch, native_bf16: bool
) -> None:
    """--amp on CPU: bfloat16 autocast with no loss scaler; float32 (and a note) on CPUs
    without native bf16, where autocast would only emulate it."""
    from edgeseg.models.desanet import DESANet
    from edgeseg.train import loop

    if native_bf16 and not loop.cpu_has_bf16():
        pytest.skip("this CPU has no native bfloat16")
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: native_bf16)
    seen: list[torch.dtype] = []
    forward = DESANet.forward

    def spy(self, x):
        out = forward(self, x)
        seen.append(out[0].dtype)
        return out

    monkeypatch.setattr(DESANet, "forward", spy)
    notes: list[str] = []
    cfg = _tiny_cfg(synthetic_root, tmp_path / "amp", amp=True, iters=3, rmi=False)
    result = train(cfg, log=notes.append)
    assert set(seen) == {torch.bfloat16 if native_bf16 else torch.float32}
    assert any("no bfloat16 instructions" in n for n in notes) is not native_bf16
    assert all(np.isfinite(result.losses)) and len(result.losses) == 3


def test_sigterm_saves_checkpoint_and_exits_130(synthetic_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [str(VENV_BIN / "edgeseg"), "train", "--data", str(synthetic_root), "--out", str(out),
           "--iters", "1000", "--batch", "1", "--crop", "64x128", "--workers", "0",
           "--split", "train", "--no-rmi", "--ckpt-every", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "CI": "true"})
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.is_file() and metrics.read_text().strip()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-2000:]
    ckpt = load_checkpoint(out / "last.pt")
    assert 10 <= ckpt["iteration"] < 1000  # log_every is 10: at least one line was written
    assert "Traceback" not in err.decode()


def test_ddp_two_processes_match_one_process_with_doubled_batch(
    synthetic_root: Path, tmp_path: Path
) -> None:
    iters = 3
    single = train(_tiny_cfg(synthetic_root, tmp_path / "one", batch=4, iters=iters, rmi=False),
                   log=lambda m: None)
    out = tmp_path / "ddp"
    cmd = [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "edgeseg",
           "train", "--data", str(synthetic_root), "--out", str(out), "--iters", str(iters),
           "--batch", "2", "--crop", "64x128", "--workers", "0", "--split", "train", "--seed", "3",
           "--lr", "0.01", "--no-rmi", "--ckpt-every", "0", "--device", "cpu", "--json"]
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    # log_every 10 > iters: the final line carries the rank-averaged loss of the last iteration
    ddp_last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["total"]
    # Same samples, same initial weights; only BatchNorm statistics differ (per-process batch
    # of 2 vs 4: SyncBatchNorm needs CUDA), so the losses agree within a few percent.
    assert ddp_last == pytest.approx(single.losses[-1], rel=0.1)
    state = load_checkpoint(out / "last.pt")
    assert state["iteration"] == iters and state["config"]["batch"] == 2


def test_sampler_shards_like_one_process() -> None:
    one = ResumableDistributedSampler(10, seed=1)
    r0 = ResumableDistributedSampler(10, seed=1, rank=0, world_size=2)
    r1 = ResumableDistributedSampler(10, seed=1, rank=1, world_size=2)
    def take(s: ResumableDistributedSampler, n: int) -> list[int]:
        return [k for _, k in zip(range(n), iter(s))]

    merged = [k for pair in zip(take(r0, 15), take(r1, 15)) for k in pair]
    assert merged == take(one, 30)
    # resuming at position 7 continues the same stream; epochs are permutations
    assert take(ResumableDistributedSampler(10, seed=1, start=7), 5) == take(one, 12)[7:]
    assert sorted(i for i, _ in take(one, 10)) == list(range(10))


def test_confusion_matrix_hand_made_case() -> None:
    # 3 classes; GT row-wise, prediction column-wise; 255 ignored
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 2]])
    cm = ConfusionMatrix(3)
    cm.update(pred, gt)
    # class 0: TP 1, FP 1 (gt 2 -> 0), FN 1 (gt 0 -> 1) -> 1/3
    # class 1: TP 2, FP 1, FN 1 (gt 1 -> 2) -> 2/4; class 2: TP 1, FP 1, FN 1 -> 1/3
    np.testing.assert_allclose(cm.iou(), [1 / 3, 1 / 2, 1 / 3])
    s = cm.summary(["a", "b", "c"])
    assert s["miou"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3)
    assert s["pixel_accuracy"] == pytest.approx(4 / 7)
    # a class absent from GT and prediction does not count in the mean
    cm4 = ConfusionMatrix(4)
    cm4.update(pred, gt)
    assert cm4.summary(list("abcd"))["iou_per_class"]["d"] is None
    assert cm4.summary(list("abcd"))["miou"] == pytest.approx(s["miou"])


def test_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "cfg.yaml"
    bad.write_text("iters: 10\nlearning_rate: 0.1\n")
    with pytest.raises(EdgesegError, match="unknown training option 'learning_rate'"):
        load_train_config(bad)
    bad.write_text("crop: [1, 2, 3]\n")
    with pytest.raises(EdgesegError, match="crop: expected two integers"):
        load_train_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("iters: 10\ncrop: 512\nlr: 0.1\n")
    cfg = load_train_config(good, lr=0.2)
    assert (cfg.iters, cfg.crop, cfg.lr, cfg.momentum) == (10, (512, 512), 0.2, 0.9)


def test_optimizer_and_warmup_options(tmp_path: Path) -> None:
    from edgeseg.models.desanet import build_model
    from edgeseg.train.loop import build_optimizer, lr_factor

    bad = tmp_path / "cfg.yaml"
    bad.write_text("optimizer: adam\n")
    with pytest.raises(EdgesegError, match="optimizer: expected one of sgd, adamw, got 'adam'"):
        load_train_config(bad)
    with pytest.raises(EdgesegError, match="warmup_iters: expected >= 0, got -1"):
        load_train_config(None, iters=10, warmup_iters=-1)
    cfg = load_train_config(None, iters=100, warmup_iters=4, poly_power=1.0)
    # linear ramp to the base lr over 4 iterations, then poly(1.0) = linear decay to 0
    assert [lr_factor(cfg, i) for i in (0, 1, 3, 4, 50)] == pytest.approx([0.25, 0.5, 1.0, 0.96, 0.5])
    assert lr_factor(load_train_config(None, iters=100), 0) == 1.0
    model = build_model("desanet-hn")
    opt = build_optimizer(load_train_config(None, optimizer="adamw", lr=3e-3), model)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["lr"] == 3e-3
    # weight decay on conv/linear weights only, for either optimizer
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0]
    sgd = build_optimizer(load_train_config(None), model)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9


def test_recipe_sits_under_yaml_and_flags(tmp_path: Path) -> None:
    from edgeseg.train.config import RECIPES

    quick = load_train_config(None, recipe="cpu-quick")
    assert (quick.optimizer, quick.batch, quick.crop, quick.rmi) == ("adamw", 4, (128, 256), False)
    yaml_file = tmp_path / "cfg.yaml"
    yaml_file.write_text("batch: 6\n")
    cfg = load_train_config(yaml_file, recipe="cpu-quick", lr=1e-3)
    assert (cfg.batch, cfg.lr, cfg.optimizer) == (6, 1e-3, "adamw")  # YAML, flag, recipe
    assert load_train_config(None, recipe="paper") == load_train_config(None)
    assert RECIPES["paper"] == {}
    with pytest.raises(EdgesegError, match="--recipe: expected one of paper, cpu-quick, got 'fast'"):
        load_train_config(None, recipe="fast")


def test_eval_cli_json_and_save_pred(trained_checkpoint, trained_run, tmp_path: Path) -> None:
    ckpt, root = trained_checkpoint
    preds = tmp_path / "preds"
    proc = subprocess.run(
        [str(VENV_BIN / "edgeseg"), "eval", "--model", str(ckpt), "--data", str(root),
         "--json", "--save-pred", str(preds)], capture_output=True, env={**os.environ, "CI": "true"},
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    report = json.loads(proc.stdout)
    assert set(report) >= {"miou", "iou_per_class", "pixel_accuracy", "images"}
    # the command (checkpoint -> Segmenter -> shared preprocessing) agrees with the training
    # loop's own evaluation of the same weights on the same split
    assert report["images"] == 24
    assert report["miou"] == pytest.approx(trained_run[0].eval["miou"], abs=2e-3)
    pngs = sorted(preds.glob("*_leftImg8bit.png"))
    assert len(pngs) == 24
    import cv2

    ids = np.unique(cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED))
    # label ids (7 road, 11 building, 23 sky, ...), never train ids 0..18 only
    assert set(ids.tolist()) <= {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}


def test_train_cli_bad_input_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(VENV_BIN / "edgeseg"), "train", "--data", str(tmp_path / "nope"), "--out",
         str(tmp_path / "o"), "--iters", "1"], capture_output=True, env={**os.environ, "CI": "true"},
    )
    err = proc.stderr.decode().strip()
    assert proc.returncode == 2 and err.startswith("error:") and len(err.splitlines()) == 1
    assert "nope" in err


def test_parse_duration_and_plan_iterations() -> None:
    from edgeseg.train.budget import parse_duration, plan_iterations

    assert [parse_duration(t) for t in ("5m", "90s", "300", "1m30s", "1.5h", " 2 min ")] == \
        [300.0, 90.0, 300.0, 90.0, 5400.0, 120.0]
    for bad in ("", "fast", "5 parsecs", "0", "-3m"):
        with pytest.raises(EdgesegError, match="--time-budget: expected a"):
            parse_duration(bad)
    # 60 s budget, 10 s spent on 6 steps, 2 it/s: 100 more fit; capped by iters; never < done
    assert plan_iterations(60, 10, 6, 2.0, 10_000, margin=1.0) == 106
    assert plan_iterations(60, 10, 6, 2.0, 10_000) == 6 + int(50 * 2.0 * 0.9)  # BUDGET_MARGIN
    assert plan_iterations(60, 10, 6, 2.0, 50) == 50
    assert plan_iterations(60, 70, 6, 2.0, 10_000) == 6
    with pytest.raises(EdgesegError, match="step rate"):
        plan_iterations(60, 10, 6, 0.0, 100)
    with pytest.raises(EdgesegError, match="time_budget_s: expected >= 0"):
        load_train_config(None, time_budget_s=-1.0)


def test_probe_end_waits_for_the_warm_up() -> None:
    from edgeseg.train.budget import PROBE_SKIP, PROBE_STEPS, probe_end
    from edgeseg.train.config import TrainConfig
    from edgeseg.train.loop import lr_factor

    fewest = PROBE_SKIP + PROBE_STEPS
    assert probe_end(0, 0) == probe_end(0, fewest - 1) == fewest  # short warm-up: fewest steps
    assert probe_end(0, 30) == 30  # the demo's warm-up
    assert probe_end(25, 30) == 25 + fewest  # a resumed run still times its own steps
    # why waiting is free: no warm-up lr depends on the run's length
    short, long = TrainConfig(iters=100, warmup_iters=30), TrainConfig(iters=5000, warmup_iters=30)
    assert [lr_factor(short, i) for i in range(30)] == [lr_factor(long, i) for i in range(30)]
    assert lr_factor(short, 30) != lr_factor(long, 30)


def test_time_budget_fixes_the_schedule_and_resume_keeps_it(
    synthetic_root: Path, tmp_path: Path, monkeypatch
) -> None:
    """The budget is planned once from the measured rate (at the warm-up's end, past the fewest
    probe steps), the poly decay ends at the planned length, and a resumed run (with another
    budget) keeps that schedule."""
    from edgeseg.train import budget, loop

    seen: list[tuple] = []
    kw = dict(optimizer="adamw", warmup_iters=12, iters=10_000, time_budget_s=30.0)
    probe = budget.probe_end(0, kw["warmup_iters"])
    assert probe == 12 > budget.PROBE_SKIP + budget.PROBE_STEPS
    total, cut_at = probe + 3, probe + 1  # the interrupt comes after the plan

    def plan(budget_s, elapsed_s, done, rate, cap):  # noqa: ANN001, ANN202
        seen.append((budget_s, done, rate, cap))
        return total  # fixed, so the three runs below are comparable

    monkeypatch.setattr(loop, "plan_iterations", plan)
    lrs: list[float] = []
    full = train(_tiny_cfg(synthetic_root, tmp_path / "full", **kw), log=lambda m: None,
                 on_step=lambda it, info: lrs.append(info["lr"]), on_schedule=seen.append)
    assert seen[0][:2] == (30.0, probe) and seen[0][2] > 0 and seen[0][3] == 10_000
    assert seen[1] == total  # on_schedule
    assert full.iteration == total and full.schedule["iters"] == total
    assert full.schedule["steps_per_s"] == pytest.approx(seen[0][2], rel=1e-3)
    assert lrs[-1] == 0.0 and lrs[3] > lrs[total - 3] > 0  # poly decay to zero at the end
    assert load_checkpoint(full.checkpoint)["schedule"]["iters"] == total

    def interrupt(it: int, _info: dict) -> None:
        if it == cut_at:
            os.kill(os.getpid(), signal.SIGTERM)

    cut = train(_tiny_cfg(synthetic_root, tmp_path / "cut", **kw), on_step=interrupt,
                log=lambda m: None)
    assert cut.interrupted and cut.iteration == cut_at
    seen.clear()
    notes: list[str] = []
    resumed = train(_tiny_cfg(synthetic_root, tmp_path / "cut", **{**kw, "time_budget_s": 1.0}),
                    resume=cut.checkpoint, log=notes.append)
    assert seen == [] and resumed.iteration == total  # not measured again
    assert any(f"resuming the time-budgeted schedule: {total} iterations" in n for n in notes)
    np.testing.assert_allclose(cut.losses + resumed.losses, full.losses, rtol=1e-6)


def test_time_budget_replans_when_the_machine_gets_busier(
    synthetic_root: Path, tmp_path: Path, monkeypatch, one_torch_thread
) -> None:
    """Issue 33: steps take 0.1 s until the plan, then 0.3 s (another job took the cores). A
    plan fixed once would run ~2.5x over the 10 s budget; re-planning ends within 10% of it.
    The loop's clock is a fake one, advanced by each step's cost."""
    import types

    from edgeseg.train import budget, loop

    clock = [1000.0]
    fake = types.SimpleNamespace(perf_counter=lambda: clock[0],
                                 **{k: getattr(loop.time, k) for k in ("time", "sleep", "monotonic")})
    monkeypatch.setattr(loop, "time", fake)
    plans: list[int] = []

    def step(it: int, _info: dict) -> None:
        clock[0] += 0.1 if not plans else 0.3

    cfg = _tiny_cfg(synthetic_root, tmp_path / "busy", optimizer="adamw", warmup_iters=12,
                    iters=10_000, time_budget_s=10.0)
    t_start = clock[0]
    result = train(cfg, log=lambda m: None, on_step=step, on_schedule=plans.append)
    first = plans[0]
    once = first - budget.probe_end(0, 12)  # the steps a fixed plan would still have run
    assert 1.2 + 0.3 * once > 20.0  # what the old fixed plan would have taken
    assert len(plans) >= 2 and plans[-1] < first  # re-planned shorter
    took = clock[0] - t_start
    assert 9.0 <= took <= 11.0, (took, plans)
    assert result.iteration == plans[-1] == result.schedule["iters"]
    assert result.schedule["replans"] >= 1
    assert load_checkpoint(result.checkpoint)["schedule"]["iters"] == result.iteration


def test_time_budget_stops_at_iters_on_a_fast_machine(synthetic_root: Path, tmp_path: Path) -> None:
    """A budget never lengthens a run: iters is the cap (ends here before the probe does)."""
    cfg = _tiny_cfg(synthetic_root, tmp_path / "cap", iters=3, time_budget_s=3600.0)
    result = train(cfg, log=lambda m: None)
    assert result.iteration == 3 and result.schedule["iters"] == 3
    assert cfg.iters == 3 and cfg.time_budget_s == 3600.0  # the caller's config is untouched


def test_busy_cpu_note(monkeypatch) -> None:
    from edgeseg.train import loop

    monkeypatch.setattr(loop.os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.setattr(loop.torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(loop.os, "getloadavg", lambda: (14.0, 13.0, 12.0))
    note = loop._loaded_cpu_note()
    assert note and "load average 14.0 on 2 cores" in note and "OMP_NUM_THREADS=1" in note
    monkeypatch.setattr(loop.os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert loop._loaded_cpu_note() is None
    monkeypatch.setattr(loop.os, "getloadavg", lambda: (14.0, 13.0, 12.0))
    monkeypatch.setattr(loop.torch, "get_num_threads", lambda: 1)
    assert loop._loaded_cpu_note() is None


# ---------------------------------------------------------------------------------------------
# Class weights (ENet's 1 / ln(1.02 + p)) from the training labels


def test_class_frequencies_and_enet_weights_match_numpy(synthetic_root: Path) -> None:
    import math

    from PIL import Image

    from edgeseg.data.cityscapes import CityscapesDataset
    from edgeseg.train.class_weight import class_frequencies, class_weights, enet_weights

    ds = CityscapesDataset(synthetic_root, "val")
    counts = np.zeros(256)
    for f in sorted((synthetic_root / "gtFine" / "val").glob("*/*_labelTrainIds.png")):
        counts += np.bincount(np.asarray(Image.open(f)).ravel(), minlength=256)
    want = counts[:19] / counts[:19].sum()  # 255 (ignore) left out
    freq = class_frequencies(ds, 19)
    np.testing.assert_allclose(freq, want, rtol=1e-12)
    w = class_weights("enet", ds, 19)
    np.testing.assert_allclose(w, [1 / math.log(1.02 + p) for p in want], rtol=1e-6)
    assert w.argmax() == want.argmin() and w.argmin() == want.argmax()
    assert enet_weights(np.array([0.0]))[0] == pytest.approx(1 / math.log(1.02))
    assert class_weights("none", ds, 19) is None
    # max_labels=2: the first and the last item only
    part = class_frequencies(ds, 19, max_labels=2)
    assert part.sum() == pytest.approx(1.0) and not np.allclose(part, freq)


def test_class_weight_option_is_checked() -> None:
    with pytest.raises(EdgesegError, match="class_weight"):
        load_train_config(None, recipe="cpu-quick", class_weight="median")


def test_demo_says_when_the_budget_fitted_too_few_iterations() -> None:
    from edgeseg.demo import _busy_note

    note = _busy_note(271, 1000, 300.0)
    assert note is not None and "fitted 271 of the recipe's 1000 iterations" in note
    assert _busy_note(600, 1000, 300.0) is None  # most of the recipe: no note
    assert _busy_note(4, 1000, None) is None  # no budget: the iterations asked for
