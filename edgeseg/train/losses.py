"""DESANet's training losses (Chang et al., Sensors 2021, section 3.4, eq. 2).

``L_total = L_main_CE + L_RMI + L_aux_CE``

- :class:`OhemCELoss` -- softmax cross-entropy with online hard example mining (eqs. 3-4), as
  in BiSeNet: keep the pixels whose true-class probability is below 0.7, but at least
  ``n_valid // 16`` of the hardest.
- :class:`RMILoss` -- region mutual information loss (Zhao et al., NeurIPS 2019, ref. [46]),
  a CPU/GPU port that reproduces the numbers of ``RMILoss.forward`` in ZJULearning/RMI
  (``losses/rmi/rmi.py``; the reference code is CUDA-only).
- :class:`DesaNetLoss` -- the sum of eq. (2), returning the terms as floats for logging.

How we read the reference and the paper (also in ``RMILoss``'s docstring):

1. The reference ``RMILoss.forward`` (``forward_sigmoid``) returns
   ``lambda * BCE + (1 - lambda) * RMI_bound`` with ``lambda = 0.5`` -- its paper's eq. (16)
   ``L_all = lambda L_ce + (1 - lambda) sum_c -I_l``. DESANet's eq. (2) names that module "the
   RMI loss [46]", and the design notes give it "weight lambda 0.5", the only lambda [46] has.
   So edgeseg's ``L_RMI`` is the whole reference module output, sigmoid BCE part included;
   the softmax OHEM CE of eq. (2) comes on top of it. ``loss_weight_lambda=0`` gives the bare
   bound (weight 1) for anyone who reads eq. (8) alone.
2. The DESANet paper writes eq. (8) as ``-1/(2d) log det M``: that is the mutual-information
   lower bound, which training maximises; the loss (and the reference) is ``+1/(2d) log det M``
   with d = radius**2 = 9, averaged over the batch and summed over classes.
3. The reference does not divide its covariances by the number of points ("to avoid
   underflow") and adds its 5e-4 ridges to those unnormalised matrices; we do the same, so the
   bound depends on the crop size exactly as the reference's does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DesaNetLoss", "OhemCELoss", "RMILoss"]

# Constants of the reference implementation (ZJULearning/RMI losses/rmi/rmi.py, rmi_utils.py).
_CLIP_MIN = 1e-6  # added to the sigmoid probabilities
_POS_ALPHA = 5e-4  # ridge on Var(P) before inversion and on M before the Cholesky factorisation
_CHOL_EPS = 1e-8  # added to diag(chol(M)) inside the log


def _zero_with_grad(logits: Tensor) -> Tensor:
    """A 0 that is still connected to the graph, so ``backward`` works on empty batches."""
    return logits.sum() * 0.0


class OhemCELoss(nn.Module):
    """Softmax cross-entropy with online hard example mining (BiSeNet convention).

    Per-pixel CE is computed for the non-ignored pixels; the pixels whose loss exceeds
    ``-ln(thresh)`` (true-class probability below ``thresh``) are kept. If fewer than
    ``n_min = n_valid // min_kept_divisor`` pass, the ``n_min`` largest losses are kept instead
    (``n_valid`` counts the whole batch). The loss is the mean over the kept pixels.

    Two corner cases BiSeNet leaves undefined: a batch with no valid pixel returns 0 (with a
    graph, so ``backward`` still works), and when ``n_valid < min_kept_divisor`` at least one
    pixel is kept (BiSeNet would average an empty set and return NaN).

    Args:
        thresh: probability threshold; 0.7 in the paper (following BiSeNet).
        min_kept_divisor: ``n_min = n_valid // min_kept_divisor``.
        ignore_index: label value that is excluded from the loss.
        weight: optional per-class weights [C] (``edgeseg.train.class_weight``); hard pixels
            are still picked by their unweighted loss.
    """

    def __init__(self, thresh: float = 0.7, min_kept_divisor: int = 16, ignore_index: int = 255,
                 weight: Tensor | None = None):
        super().__init__()
        if not 0.0 < thresh <= 1.0:
            raise ValueError(f"OhemCELoss: thresh must be in (0, 1], got {thresh}")
        if min_kept_divisor < 1:
            raise ValueError(f"OhemCELoss: min_kept_divisor must be >= 1, got {min_kept_divisor}")
        self.thresh = thresh
        self.loss_thresh = -math.log(thresh)
        self.min_kept_divisor = min_kept_divisor
        self.ignore_index = ignore_index
        self.weight: Tensor | None
        self.register_buffer("weight", weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits`` [N, C, H, W], ``target`` [N, H, W] (long) -> scalar loss."""
        _check_shapes("OhemCELoss", logits, target)
        valid = target != self.ignore_index
        n_valid = int(valid.sum())
        if n_valid == 0:
            return _zero_with_grad(logits)
        loss = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        loss = loss[valid]
        n_min = max(n_valid // self.min_kept_divisor, 1)
        keep = (loss > self.loss_thresh).nonzero().squeeze(1)
        if keep.numel() < n_min:
            keep = loss.topk(n_min, sorted=False).indices
        if self.weight is None:
            return loss[keep].mean()
        # hard pixels are picked by their plain loss (the threshold keeps its meaning), then
        # averaged with their class weights: sum(w * l) / sum(w), torch's weighted-CE mean
        w = self.weight[target[valid][keep]]
        return (w * loss[keep]).sum() / w.sum()

    def extra_repr(self) -> str:
        return (
            f"thresh={self.thresh}, min_kept_divisor={self.min_kept_divisor}, "
            f"ignore_index={self.ignore_index}, weighted={self.weight is not None}"
        )


class RMILoss(nn.Module):
    """Region mutual information loss, a port of ZJULearning/RMI ``RMILoss.forward``.

    With the reference defaults (sigmoid probabilities, ``lambda_way=1``) it returns
    ``loss_weight_lambda * BCE + (1 - loss_weight_lambda) * bound``:

    - ``BCE``: sigmoid binary cross-entropy of the logits against the one-hot labels, summed
      over classes and valid pixels and divided by ``n_valid + 1`` (as the reference does).
    - ``bound``: ``P = sigmoid(logits) * valid + 1e-6`` and the masked one-hot ``Y`` are
      average-pooled (kernel = stride = ``pool_size``, padding ``pool_size // 2``, padded zeros
      counted); every position then gives a d = ``radius**2`` dimensional vector of its
      ``radius x radius`` neighbourhood (no padding). Per image and class, in float64:
      ``M = S_YY - S_YP (S_PP + 5e-4 I)^-1 S_YP^T`` with ``S`` the centred but unnormalised
      (co)variance sums, and ``bound_c = mean_n 0.5 * logdet(M + 5e-4 I) / d`` with the
      log-determinant from a Cholesky factor (``2 sum log(diag L + 1e-8)``). The bound is
      the sum over classes.

    ``lambda_way=0`` gives ``BCE + rmi_weight * bound`` (the reference uses
    ``loss_weight_lambda`` as that weight; our defaults make both 0.5). Setting
    ``loss_weight_lambda=0`` with ``lambda_way=1`` gives the bound alone.

    Pixels whose label is ``ignore_index`` or outside ``[0, num_classes)`` are invalid: their
    one-hot row and probabilities are zeroed before pooling and they are left out of the BCE.
    The covariance algebra runs in float64 with autocast disabled; the result has the logits'
    dtype (float32 for half-precision logits).

    Args:
        num_classes: number of classes C.
        radius: side of the square neighbourhood (3 -> d = 9).
        pool_size: average-pooling kernel and stride before the RMI (1 = no pooling).
        lambda_way: 1 -> ``l * BCE + (1 - l) * bound``; 0 -> ``BCE + rmi_weight * bound``.
        rmi_weight: weight of the bound when ``lambda_way=0``.
        loss_weight_lambda: ``l`` above, the BCE weight when ``lambda_way=1``.
        ignore_index: label value excluded from the loss.
    """

    def __init__(
        self,
        num_classes: int,
        radius: int = 3,
        pool_size: int = 4,
        lambda_way: int = 1,
        rmi_weight: float = 0.5,
        loss_weight_lambda: float = 0.5,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"RMILoss: num_classes must be >= 1, got {num_classes}")
        if radius < 1:
            raise ValueError(f"RMILoss: radius must be >= 1, got {radius}")
        if pool_size < 1:
            raise ValueError(f"RMILoss: pool_size must be >= 1, got {pool_size}")
        if lambda_way not in (0, 1):
            raise ValueError(f"RMILoss: lambda_way must be 0 or 1, got {lambda_way}")
        self.num_classes = num_classes
        self.radius = radius
        self.pool_size = pool_size
        self.lambda_way = lambda_way
        self.rmi_weight = rmi_weight
        self.loss_weight_lambda = loss_weight_lambda
        self.ignore_index = ignore_index
        self.d = radius * radius

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits`` [N, C, H, W], ``target`` [N, H, W] (long) -> scalar loss."""
        bce, bound = self.terms(logits, target)
        return self.combine(bce, bound)

    def combine(self, bce: Tensor, bound: Tensor) -> Tensor:
        """Weight the two parts returned by :meth:`terms` as ``forward`` does."""
        if self.lambda_way == 1:
            lam = self.loss_weight_lambda
            return lam * bce + (1.0 - lam) * bound
        return bce + self.rmi_weight * bound

    def terms(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(BCE, bound)``, the two unweighted parts of the loss."""
        _check_shapes("RMILoss", logits, target)
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"RMILoss: logits have {logits.shape[1]} channels, expected {self.num_classes}"
            )
        with torch.autocast(device_type=logits.device.type, enabled=False):
            if logits.dtype not in (torch.float32, torch.float64):
                logits = logits.float()
            valid = (target >= 0) & (target < self.num_classes) & (target != self.ignore_index)
            mask = valid.to(logits.dtype)
            onehot = F.one_hot(torch.where(valid, target, 0), self.num_classes)
            onehot = onehot.permute(0, 3, 1, 2).to(logits.dtype) * mask.unsqueeze(1)

            bce = F.binary_cross_entropy_with_logits(
                logits, onehot, weight=mask.unsqueeze(1).expand_as(logits), reduction="sum"
            ) / (mask.sum() + 1.0)

            probs = logits.sigmoid() * mask.unsqueeze(1) + _CLIP_MIN
            bound = self.rmi_lower_bound(onehot, probs).to(logits.dtype)
        return bce, bound

    def rmi_lower_bound(self, labels: Tensor, probs: Tensor) -> Tensor:
        """The RMI term from one-hot ``labels`` and ``probs``, both [N, C, H, W] (see class doc)."""
        if self.pool_size > 1:
            k = self.pool_size
            labels = F.avg_pool2d(labels, kernel_size=k, stride=k, padding=k // 2)
            probs = F.avg_pool2d(probs, kernel_size=k, stride=k, padding=k // 2)
        h, w = labels.shape[2:]
        r = self.radius
        if h < r or w < r:
            raise ValueError(
                f"RMILoss: the pooled map is {h}x{w}, smaller than the radius {r}; "
                "use larger crops or a smaller pool_size"
            )
        y = self._neighbourhoods(labels).detach()  # [N, C, d, K], float64
        p = self._neighbourhoods(probs)
        y = y - y.mean(dim=3, keepdim=True)
        p = p - p.mean(dim=3, keepdim=True)
        eye = torch.eye(self.d, dtype=p.dtype, device=p.device)
        s_yy = y @ y.transpose(2, 3)
        s_pp = p @ p.transpose(2, 3)
        s_yp = y @ p.transpose(2, 3)
        # s_yp (s_pp + a I)^-1 s_yp^T; a solve instead of the reference's explicit inverse.
        m = s_yy - s_yp @ torch.linalg.solve(s_pp + _POS_ALPHA * eye, s_yp.transpose(2, 3))
        logdet = _logdet_cholesky(m + _POS_ALPHA * eye)  # [N, C]
        per_class = (0.5 * logdet).mean(dim=0) / self.d
        return per_class.sum()

    def _neighbourhoods(self, x: Tensor) -> Tensor:
        """[N, C, H, W] -> [N, C, r*r, K] float64, K = (H - r + 1)(W - r + 1), row-major shifts."""
        n, c, h, w = x.shape
        r = self.radius
        hh, ww = h - r + 1, w - r + 1
        shifts = [x[:, :, dy : dy + hh, dx : dx + ww] for dy in range(r) for dx in range(r)]
        return torch.stack(shifts, dim=2).reshape(n, c, r * r, hh * ww).to(torch.float64)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, radius={self.radius}, pool_size={self.pool_size}, "
            f"lambda_way={self.lambda_way}, rmi_weight={self.rmi_weight}, "
            f"loss_weight_lambda={self.loss_weight_lambda}, ignore_index={self.ignore_index}"
        )


def _logdet_cholesky(a: Tensor) -> Tensor:
    """``2 sum log(diag(chol(a)) + 1e-8)`` over the last two dims, as the reference computes it.

    ``a`` is symmetric positive definite in exact arithmetic (a Schur complement plus a ridge).
    Should rounding make a factorisation fail, those matrices fall back to the eigenvalues
    clamped at the ridge, instead of stopping a training run.
    """
    a = 0.5 * (a + a.transpose(-2, -1))
    chol, info = torch.linalg.cholesky_ex(a)
    logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1) + _CHOL_EPS).sum(-1)
    failed = info != 0
    if bool(failed.any()):
        eig = torch.linalg.eigvalsh(a).clamp_min(_POS_ALPHA)
        logdet = torch.where(failed, eig.log().sum(-1), logdet)
    return logdet


class DesaNetLoss(nn.Module):
    """DESANet's total loss, paper eq. (2): ``OHEM-CE(main) + RMI(main) + OHEM-CE(aux)``.

    ``RMI`` is :class:`RMILoss` as the reference returns it (``0.5 * BCE + 0.5 * bound``; see
    the module docstring for why the BCE part belongs to it). All terms have weight 1.

    Args:
        num_classes: number of classes C.
        ohem_thresh, min_kept_divisor: :class:`OhemCELoss` settings for both CE terms.
        rmi_radius, rmi_pool_size, lambda_way, rmi_weight, loss_weight_lambda: :class:`RMILoss`.
        ignore_index: label value excluded from every term.
        class_weight: optional per-class weights [C] of both CE terms (not of RMI).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        ohem_thresh: float = 0.7,
        min_kept_divisor: int = 16,
        rmi_radius: int = 3,
        rmi_pool_size: int = 4,
        lambda_way: int = 1,
        rmi_weight: float = 0.5,
        loss_weight_lambda: float = 0.5,
        ignore_index: int = 255,
        class_weight: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.ce = OhemCELoss(ohem_thresh, min_kept_divisor, ignore_index, class_weight)
        self.rmi = RMILoss(
            num_classes,
            radius=rmi_radius,
            pool_size=rmi_pool_size,
            lambda_way=lambda_way,
            rmi_weight=rmi_weight,
            loss_weight_lambda=loss_weight_lambda,
            ignore_index=ignore_index,
        )

    def forward(
        self, main_logits: Tensor, aux_logits: Tensor | None, target: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """Return ``(total, terms)``.

        ``terms`` holds floats for logging: ``main_ce``, ``rmi`` (weighted, as added to the
        total), its unweighted parts ``rmi_bce`` and ``rmi_bound``, ``aux_ce`` (only when
        ``aux_logits`` is given) and ``total``. ``aux_logits=None`` (e.g. a model without its
        auxiliary head) drops the auxiliary term.
        """
        main_ce = self.ce(main_logits, target)
        bce, bound = self.rmi.terms(main_logits, target)
        rmi = self.rmi.combine(bce, bound)
        total = main_ce + rmi
        terms = {
            "main_ce": float(main_ce.detach()),
            "rmi": float(rmi.detach()),
            "rmi_bce": float(bce.detach()),
            "rmi_bound": float(bound.detach()),
        }
        if aux_logits is not None:
            aux_ce = self.ce(aux_logits, target)
            total = total + aux_ce
            terms["aux_ce"] = float(aux_ce.detach())
        terms["total"] = float(total.detach())
        return total, terms


def _check_shapes(who: str, logits: Tensor, target: Tensor) -> None:
    if logits.dim() != 4 or target.dim() != 3:
        raise ValueError(
            f"{who}: expected logits [N, C, H, W] and target [N, H, W], "
            f"got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    if logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(
            f"{who}: logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in "
            "batch or spatial size; upsample the logits to the label size first"
        )
