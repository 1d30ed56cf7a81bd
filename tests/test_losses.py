"""Tests for edgeseg.train.losses against values computed independently of the code under test.

- OHEM: hand-computed cases built from known probabilities, and a plain numpy implementation.
- RMI: a float64 numpy implementation written from the formulas with explicit loops (pooling,
  neighbourhood vectors, covariances, slogdet instead of Cholesky), plus a value recorded from
  the reference implementation itself (see ``REF_*`` below).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgeseg.train.losses import DesaNetLoss, OhemCELoss, RMILoss

# ---------------------------------------------------------------------------------------------
# helpers


def _logits_from_probs(true_prob: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Logits [1, C, H, W] whose softmax gives ``true_prob`` to the label class (rest shared)."""
    h, w = true_prob.shape
    rest = (1.0 - true_prob) / (num_classes - 1)
    probs = np.repeat(rest[None], num_classes, axis=0)
    for i in range(h):
        for j in range(w):
            cls = labels[i, j] if labels[i, j] < num_classes else 0
            probs[cls, i, j] = true_prob[i, j]
    return np.log(probs)[None]


def _numpy_ohem(logits: np.ndarray, labels: np.ndarray, thresh: float = 0.7, div: int = 16,
                weight: np.ndarray | None = None):
    """Plain numpy OHEM CE (BiSeNet rule; keeps >= 1 pixel); ``weight``: per-class weights of
    the kept pixels' mean (hard pixels picked by their unweighted loss)."""
    x = logits.transpose(0, 2, 3, 1).reshape(-1, logits.shape[1]).astype(np.float64)
    y = labels.reshape(-1)
    keep = y != 255
    if not keep.any():
        return 0.0
    x, y = x[keep], y[keep]
    m = x.max(axis=1, keepdims=True)
    logp = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(len(y)), y]
    n_min = max(len(y) // div, 1)
    kept = np.flatnonzero(loss > -math.log(thresh))
    if len(kept) < n_min:
        kept = np.argsort(-loss, kind="stable")[:n_min]
    w = np.ones(len(y)) if weight is None else weight[y]
    return float((w[kept] * loss[kept]).sum() / w[kept].sum())


# ---------------------------------------------------------------------------------------------
# OHEM


def test_ohem_threshold_rule_hand_computed() -> None:
    # 4x8 image, 3 classes; true-class probabilities 0.95 except the cells below.
    labels = (np.arange(32).reshape(4, 8) % 3).astype(np.int64)
    p = np.full((4, 8), 0.95)
    p[0, 1], p[1, 2], p[2, 3] = 0.5, 0.2, 0.6  # hard
    p[3, 0], p[3, 1] = 0.69, 0.71  # 0.69 is just hard, 0.71 just easy
    p[0, 5] = 0.01  # would be the hardest, but its label is ignored
    labels[0, 5] = labels[0, 6] = labels[1, 0] = labels[2, 7] = 255  # n_valid = 28 -> n_min = 1
    logits = _logits_from_probs(p, labels, 3)
    expected = -(math.log(0.5) + math.log(0.2) + math.log(0.6) + math.log(0.69)) / 4
    assert _numpy_ohem(logits, labels[None]) == pytest.approx(expected, rel=1e-12)
    got = OhemCELoss()(torch.tensor(logits), torch.tensor(labels[None]))
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_ohem_min_kept_rule_hand_computed() -> None:
    # 8x8, 2 classes, 16 ignored pixels: n_valid = 48 -> n_min = 3 (4 if ignored were counted).
    labels = (np.arange(64).reshape(8, 8) % 2).astype(np.int64)
    labels[:2, :] = 255
    p = np.full((8, 8), 0.9)
    p[0, :] = 0.01  # ignored rows: hardest if they were not ignored
    p[4, 4] = 0.4  # the only pixel above the loss threshold
    p[5, 1], p[6, 6] = 0.8, 0.75  # easy, but among the 3 hardest
    logits = _logits_from_probs(p, labels, 2)
    expected = -(math.log(0.4) + math.log(0.75) + math.log(0.8)) / 3
    assert _numpy_ohem(logits, labels[None]) == pytest.approx(expected, rel=1e-12)
    got = OhemCELoss()(torch.tensor(logits), torch.tensor(labels[None]))
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_ohem_matches_numpy_on_random_batches() -> None:
    rng = np.random.default_rng(7)
    crit = OhemCELoss()
    for scale in (0.3, 1.0, 4.0):  # few hard pixels (min-kept rule) ... many hard pixels
        logits = scale * rng.standard_normal((2, 5, 12, 10))
        labels = rng.integers(0, 5, size=(2, 12, 10))
        labels[rng.random(labels.shape) < 0.2] = 255
        if scale == 0.3:  # make almost everything easy so the min-kept rule decides
            for n, i, j in np.argwhere(labels != 255):
                logits[n, labels[n, i, j], i, j] += 6.0
        got = crit(torch.tensor(logits), torch.tensor(labels)).item()
        assert got == pytest.approx(_numpy_ohem(logits, labels), rel=1e-10)


def test_weighted_ohem_matches_numpy_and_torch_weighted_ce() -> None:
    rng = np.random.default_rng(11)
    weight = np.array([0.5, 1.0, 3.0, 8.0, 20.0])
    crit = OhemCELoss(weight=torch.tensor(weight))
    for scale in (0.3, 4.0):  # min-kept rule ... threshold rule
        logits = scale * rng.standard_normal((2, 5, 12, 10))
        labels = rng.integers(0, 5, size=(2, 12, 10))
        labels[rng.random(labels.shape) < 0.2] = 255
        got = crit(torch.tensor(logits), torch.tensor(labels)).item()
        assert got == pytest.approx(_numpy_ohem(logits, labels, weight=weight), rel=1e-10)
        assert got != pytest.approx(_numpy_ohem(logits, labels), rel=1e-3)  # weights matter
    # thresh 1.0 keeps every valid pixel: torch's own class-weighted CE (weighted mean)
    logits = torch.randn(2, 5, 6, 7, dtype=torch.float64)
    labels = torch.randint(0, 5, (2, 6, 7))
    labels[0, 0] = 255
    want = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor(weight),
                                             ignore_index=255)
    got = OhemCELoss(thresh=1.0, weight=torch.tensor(weight))(logits, labels)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)


def test_ohem_all_ignored_returns_zero_with_grad() -> None:
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = OhemCELoss()(logits, torch.full((2, 4, 4), 255, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0


def test_ohem_keeps_one_pixel_when_few_valid_and_all_easy() -> None:
    labels = np.full((1, 2, 4), 255, dtype=np.int64)
    labels[0, 0, :3] = [0, 1, 0]  # 3 valid -> 3 // 16 == 0; BiSeNet would return NaN
    p = np.array([[0.9, 0.8, 0.95, 0.5], [0.5, 0.5, 0.5, 0.5]])
    logits = _logits_from_probs(p, labels[0], 2)
    got = OhemCELoss()(torch.tensor(logits), torch.tensor(labels)).item()
    assert got == pytest.approx(-math.log(0.8), rel=1e-10)


# ---------------------------------------------------------------------------------------------
# RMI: independent numpy reference

POS_ALPHA = 5e-4


def _numpy_avg_pool(x: np.ndarray, k: int) -> np.ndarray:
    """avg pool, kernel = stride = k, zero padding k // 2 counted in the divisor (k * k)."""
    n, c, h, w = x.shape
    pad = k // 2
    oh, ow = (h + 2 * pad - k) // k + 1, (w + 2 * pad - k) // k + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * k - pad, j * k - pad
            rs, cs = slice(max(r0, 0), min(r0 + k, h)), slice(max(c0, 0), min(c0 + k, w))
            out[:, :, i, j] = x[:, :, rs, cs].sum(axis=(2, 3)) / (k * k)
    return out


def _numpy_rmi(
    logits: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    radius: int = 3,
    pool: int = 4,
    lam: float = 0.5,
) -> tuple[float, float, float]:
    """(total, bce, bound) following the formulas of RMI (Zhao et al. 2019) and its code's
    conventions: sigmoid probabilities + 1e-6, one-hot labels, invalid pixels zeroed, avg pool,
    radius x radius neighbourhoods without padding, centred covariance sums (not divided by the
    number of points), M = S_YY - S_YP (S_PP + a I)^-1 S_YP^T, bound = sum_c mean_n
    log det(M + a I) / (2 d), total = lam * BCE + (1 - lam) * bound."""
    x = logits.astype(np.float64)
    n, c, h, w = x.shape
    valid = (labels >= 0) & (labels < num_classes)
    y = np.zeros_like(x)
    for b in range(n):
        for i in range(h):
            for j in range(w):
                if valid[b, i, j]:
                    y[b, labels[b, i, j], i, j] = 1.0
    m = valid[:, None].astype(np.float64)
    bce_el = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    bce = float((bce_el * m).sum() / (m.sum() + 1.0))

    p = 1.0 / (1.0 + np.exp(-x)) * m + 1e-6
    if pool > 1:
        y, p = _numpy_avg_pool(y, pool), _numpy_avg_pool(p, pool)
    hp, wp = y.shape[2:]
    d = radius * radius
    per_class = np.zeros(c)
    for cls in range(c):
        for b in range(n):
            yv, pv = [], []
            for i in range(hp - radius + 1):
                for j in range(wp - radius + 1):
                    yv.append(
                        [y[b, cls, i + dy, j + dx] for dy in range(radius) for dx in range(radius)]
                    )
                    pv.append(
                        [p[b, cls, i + dy, j + dx] for dy in range(radius) for dx in range(radius)]
                    )
            yv = np.array(yv).T  # [d, K]
            pv = np.array(pv).T
            yc = yv - yv.mean(axis=1, keepdims=True)
            pc = pv - pv.mean(axis=1, keepdims=True)
            s_yy, s_pp, s_yp = yc @ yc.T, pc @ pc.T, yc @ pc.T
            mat = s_yy - s_yp @ np.linalg.inv(s_pp + POS_ALPHA * np.eye(d)) @ s_yp.T
            sign, logdet = np.linalg.slogdet(mat + POS_ALPHA * np.eye(d))
            assert sign > 0
            per_class[cls] += 0.5 * logdet / d / n
    bound = float(per_class.sum())
    return lam * bce + (1.0 - lam) * bound, bce, bound


def _make_inputs(seed: int = 2021, n: int = 2, c: int = 4, h: int = 60, w: int = 60):
    """Blocky labels with an ignored block and scattered ignored pixels; logits = signal + noise.
    60x60 pools (kernel 4, stride 4, padding 2) to 16x16."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, c, size=(n, h // 4, w // 4))
    labels = coarse.repeat(4, axis=1).repeat(4, axis=2)
    labels[:, :6, :10] = 255
    labels[rng.random((n, h, w)) < 0.05] = 255
    onehot = np.eye(c)[np.where(labels == 255, 0, labels)].transpose(0, 3, 1, 2)
    logits = 2.0 * onehot - 1.0 + 1.5 * rng.standard_normal((n, c, h, w))
    return logits, labels


# Recorded from the reference implementation: ZJULearning/RMI commit 10a40cdb,
# losses/rmi/rmi.py RMILoss(num_classes=4, rmi_radius=3, rmi_pool_way=1, rmi_pool_size=4,
# rmi_pool_stride=4, loss_weight_lambda=0.5, lambda_way=1), run on CPU under torch 2.14.1 with
# two local patches (in /tmp, not in this repo): `.type(torch.cuda.DoubleTensor)` ->
# `.to(torch.float64)` in rmi_lower_bound, and `torch.cholesky` -> `torch.linalg.cholesky` in
# rmi_utils.log_det_by_cholesky. Input: `_make_inputs()` above (numpy default_rng seed 2021,
# logits 2x4x60x60 as float32, labels 2x60x60 with 255s). The reference casts its RMI term to
# float32, so these are float32 values.
REF_TOTAL = 1.9713894128799438  # RMILoss.forward
REF_BOUND = 1.9187662601470947  # RMILoss.rmi_lower_bound on the masked one-hot / probabilities


def test_rmi_matches_recorded_reference_value() -> None:
    logits, labels = _make_inputs()
    crit = RMILoss(4)
    x, y = torch.tensor(logits, dtype=torch.float32), torch.tensor(labels)
    assert crit(x, y).item() == pytest.approx(REF_TOTAL, rel=1e-6)
    assert crit.terms(x, y)[1].item() == pytest.approx(REF_BOUND, rel=1e-6)


def test_rmi_matches_numpy_reference() -> None:
    logits, labels = _make_inputs()
    total, bce, bound = _numpy_rmi(logits, labels, 4)
    assert total == pytest.approx(REF_TOTAL, rel=1e-6)  # the numpy reference agrees with [46]
    crit = RMILoss(4)
    x, y = torch.tensor(logits, dtype=torch.float64), torch.tensor(labels)
    got_bce, got_bound = crit.terms(x, y)
    assert got_bce.item() == pytest.approx(bce, rel=1e-9)
    assert got_bound.item() == pytest.approx(bound, rel=1e-6)
    assert crit(x, y).item() == pytest.approx(total, rel=1e-6)


def test_rmi_matches_numpy_on_pure_noise_and_other_settings() -> None:
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((2, 3, 24, 28))
    labels = rng.integers(0, 3, size=(2, 24, 28))
    labels[rng.random(labels.shape) < 0.1] = 255
    x, y = torch.tensor(logits), torch.tensor(labels)
    for radius, pool, lam in ((3, 4, 0.5), (2, 2, 0.25), (3, 1, 0.0)):
        want, _, _ = _numpy_rmi(logits, labels, 3, radius=radius, pool=pool, lam=lam)
        crit = RMILoss(3, radius=radius, pool_size=pool, loss_weight_lambda=lam)
        assert crit(x, y).item() == pytest.approx(want, rel=1e-6)


def test_rmi_lambda_way_zero_uses_rmi_weight() -> None:
    logits, labels = _make_inputs()
    _, bce, bound = _numpy_rmi(logits, labels, 4)
    crit = RMILoss(4, lambda_way=0, rmi_weight=0.3)
    got = crit(torch.tensor(logits), torch.tensor(labels)).item()
    assert got == pytest.approx(bce + 0.3 * bound, rel=1e-6)


def test_rmi_ignores_invalid_pixels() -> None:
    logits, labels = _make_inputs()
    y = torch.tensor(labels)
    ignored = (y == 255).unsqueeze(1).expand(-1, 4, -1, -1)
    crit = RMILoss(4)
    x = torch.tensor(logits, requires_grad=True)
    loss = crit(x, y)
    loss.backward()
    assert x.grad is not None
    assert torch.count_nonzero(x.grad[ignored]) == 0
    assert torch.count_nonzero(x.grad[~ignored]) > 0
    # changing logits under ignored pixels changes nothing
    x2 = torch.tensor(logits)
    x2[ignored] = 50.0
    assert crit(x2, y).item() == loss.item()
    # any label outside [0, C) is treated like ignore_index
    y_out = torch.where(y == 255, torch.tensor(7), y)
    assert crit(torch.tensor(logits), y_out).item() == loss.item()


def test_rmi_perfect_prediction_beats_random() -> None:
    logits, labels = _make_inputs()
    y = torch.tensor(labels)
    onehot = np.eye(4)[np.where(labels == 255, 0, labels)].transpose(0, 3, 1, 2)
    crit = RMILoss(4)
    perfect_bce, perfect_bound = crit.terms(torch.tensor(12.0 * (2 * onehot - 1)), y)
    rand_bce, rand_bound = crit.terms(
        torch.tensor(np.random.default_rng(1).standard_normal(logits.shape)), y
    )
    assert perfect_bound.item() < rand_bound.item() - 1.0
    assert perfect_bce.item() < rand_bce.item()
    assert crit.combine(perfect_bce, perfect_bound) < crit.combine(rand_bce, rand_bound)


def test_rmi_gradcheck_small() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 2, 10, 10, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 2, (1, 10, 10))
    y[0, 0, :3] = 255
    crit = RMILoss(2, pool_size=2)  # pooled 6x6 -> 16 neighbourhoods
    assert torch.autograd.gradcheck(lambda t: crit(t, y), (x,), eps=1e-6, atol=1e-6)


def test_rmi_half_precision_logits_and_errors() -> None:
    logits, labels = _make_inputs(h=32, w=32)
    y = torch.tensor(labels)
    crit = RMILoss(4)
    full = crit(torch.tensor(logits, dtype=torch.float32), y)
    half = crit(torch.tensor(logits, dtype=torch.bfloat16), y)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(full.item(), rel=2e-2)
    with pytest.raises(ValueError, match="smaller than the radius"):
        crit(torch.zeros(1, 4, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="channels"):
        crit(torch.zeros(1, 3, 32, 32), torch.zeros(1, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="spatial"):
        crit(torch.zeros(1, 4, 32, 32), torch.zeros(1, 16, 16, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# DesaNetLoss


def test_desanet_loss_sums_terms_and_backprops() -> None:
    logits, labels = _make_inputs(h=32, w=32)
    y = torch.tensor(labels)
    main = torch.tensor(logits, dtype=torch.float32, requires_grad=True)
    aux = torch.tensor(0.5 * logits[:, :, ::-1].copy(), dtype=torch.float32, requires_grad=True)
    crit = DesaNetLoss(4)
    total, terms = crit(main, aux, y)
    ohem, rmi = OhemCELoss(), RMILoss(4)
    want_main, want_aux = ohem(main, y).item(), ohem(aux, y).item()
    bce, bound = rmi.terms(main, y)
    want_rmi = 0.5 * bce.item() + 0.5 * bound.item()
    assert set(terms) == {"main_ce", "rmi", "rmi_bce", "rmi_bound", "aux_ce", "total"}
    assert all(isinstance(v, float) for v in terms.values())
    assert terms["main_ce"] == pytest.approx(want_main, rel=1e-6)
    assert terms["aux_ce"] == pytest.approx(want_aux, rel=1e-6)
    assert terms["rmi"] == pytest.approx(want_rmi, rel=1e-6)
    assert terms["rmi_bce"] == pytest.approx(bce.item(), rel=1e-6)
    assert terms["rmi_bound"] == pytest.approx(bound.item(), rel=1e-6)
    assert total.item() == pytest.approx(want_main + want_rmi + want_aux, rel=1e-6)
    assert terms["total"] == pytest.approx(total.item(), rel=1e-7)
    total.backward()
    for t in (main, aux):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_desanet_loss_without_aux() -> None:
    logits, labels = _make_inputs(h=32, w=32)
    y = torch.tensor(labels)
    main = torch.tensor(logits, dtype=torch.float32, requires_grad=True)
    total, terms = DesaNetLoss(4)(main, None, y)
    assert "aux_ce" not in terms
    assert total.item() == pytest.approx(terms["main_ce"] + terms["rmi"], rel=1e-6)
    total.backward()
    assert main.grad is not None and torch.isfinite(main.grad).all()
