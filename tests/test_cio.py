"""CIO counted by hooks against CIO worked out by hand from the layer shapes; roofline maths.

The expected numbers never use hooks: they walk each network's convolutions analytically
(output size = floor((H + 2p - d(k-1) - 1) / s) + 1) and add input + output elements.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from edgeseg.bench.cio import (
    BYTES_PER_ELEMENT,
    bytes_per_element,
    conv_cio,
    dram_traffic_mb,
)
from edgeseg.bench.roofline import achieved_gflops_per_s, efficiency, roofline
from edgeseg.errors import EdgesegError
from edgeseg.models.deform import DeformableConv2d


def out_size(h: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    return (h + 2 * p - d * (k - 1) - 1) // s + 1


# ---------------------------------------------------------------------------------------------
# Hand-checked small cases
# ---------------------------------------------------------------------------------------------


def test_single_conv_matches_the_worked_example() -> None:
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    r = conv_cio(nn.Sequential(conv), (1, 3, 32, 32))
    assert len(r.rows) == 1
    row = r.rows[0]
    assert (row.in_elements, row.out_elements) == (3072, 2048)  # 3*32*32, 8*16*16
    assert r.cio == 3072 + 2048
    assert row.out_shape == (1, 8, 16, 16)
    assert row.params == 8 * 3 * 9 + 8
    assert row.macs == 2048 * 3 * 9
    assert (row.name, row.kind, row.component) == ("0", "Conv2d", "0")


def _tiny() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),  # 0
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 1),  # 3
        nn.ConvTranspose2d(16, 4, 2, stride=2),  # 4
        DeformableConv2d(4, 6, 3, padding=1),  # 5 (+ 5.offset)
        nn.Conv2d(6, 6, 3, padding=2, dilation=2, groups=3, bias=False),  # 6
    )


def test_tiny_sequential_by_hand() -> None:
    h = w = 32
    h1, w1 = out_size(h, 3, 2, 1), out_size(w, 3, 2, 1)  # 16
    h2, w2 = h1 * 2, w1 * 2  # transposed conv k2 s2 doubles
    expected = [
        ("0", 3 * h * w, 8 * h1 * w1, 8 * h1 * w1 * 3 * 9),
        ("3", 8 * h1 * w1, 16 * h1 * w1, 16 * h1 * w1 * 8),
        ("4", 16 * h1 * w1, 4 * h2 * w2, 16 * h1 * w1 * 4 * 4),  # in x C_out x k*k
        ("5.offset", 4 * h2 * w2, 18 * h2 * w2, 18 * h2 * w2 * 4 * 9),
        ("5", 4 * h2 * w2, 6 * h2 * w2, 6 * h2 * w2 * 4 * 9),
        ("6", 6 * h2 * w2, 6 * h2 * w2, 6 * h2 * w2 * 2 * 9),
    ]
    model = _tiny()
    r = conv_cio(model, (1, 3, h, w))
    got = [(row.name, row.in_elements, row.out_elements, row.macs) for row in r.rows]
    assert got == expected  # offset conv runs (and is hooked) inside the deformable conv
    assert r.cio == sum(i + o for _, i, o, _ in expected) == 64512
    dcn = next(row for row in r.rows if row.name == "5")
    assert dcn.kind == "DeformableConv2d"
    assert dcn.params == 6 * 4 * 9  # its own weight; the offset conv's params are its own row
    assert next(row for row in r.rows if row.name == "5.offset").params == 18 * 4 * 9 + 18
    assert r.components["5"] == {
        "cio": 4096 + 18432 + 4096 + 6144,
        "in_elements": 8192,
        "out_elements": 24576,
        "params": 6 * 4 * 9 + 18 * 4 * 9 + 18,
        "macs": expected[3][3] + expected[4][3],
        "layers": 2,
    }


def test_batch_scales_and_state_is_restored() -> None:
    model = _tiny().train()
    one = conv_cio(model, (1, 3, 32, 32))
    two = conv_cio(model, torch.randn(2, 3, 32, 32))
    assert two.cio == 2 * one.cio and two.input_shape == (2, 3, 32, 32)
    assert model.training  # eval during the count, mode restored afterwards
    assert all(not m._forward_hooks for m in model.modules())
    assert torch.is_grad_enabled()  # no_grad did not leak


def test_shared_module_counts_each_call() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.conv(x))

    r = conv_cio(Twice(), (1, 4, 8, 8))
    assert [row.name for row in r.rows] == ["conv", "conv"]
    assert r.cio == 4 * 256


def test_bad_shape_is_a_user_error() -> None:
    with pytest.raises(EdgesegError, match="N, C, H, W"):
        conv_cio(_tiny(), (3, 32, 32))


# ---------------------------------------------------------------------------------------------
# ResNet-18 walked by hand
# ---------------------------------------------------------------------------------------------


def _resnet18_convs(h: int, w: int) -> list[tuple[str, int, int, int]]:
    """(component, in elements, out elements, MACs) of every conv in torchvision's resnet18."""
    rows: list[tuple[str, int, int, int]] = []

    def conv(
        comp: str, cin: int, cout: int, k: int, s: int, p: int, hw: tuple[int, int]
    ) -> tuple[int, int]:
        ho, wo = out_size(hw[0], k, s, p), out_size(hw[1], k, s, p)
        rows.append((comp, cin * hw[0] * hw[1], cout * ho * wo, cout * ho * wo * cin * k * k))
        return ho, wo

    hw = conv("conv1", 3, 64, 7, 2, 3, (h, w))
    hw = (out_size(hw[0], 3, 2, 1), out_size(hw[1], 3, 2, 1))  # maxpool, not a conv
    cin = 64
    for i, cout in enumerate((64, 128, 256, 512), start=1):
        comp = f"layer{i}"
        for block in range(2):
            stride = 2 if (block == 0 and i > 1) else 1
            mid = conv(comp, cin, cout, 3, stride, 1, hw)
            conv(comp, cout, cout, 3, 1, 1, mid)
            if stride != 1 or cin != cout:
                conv(comp, cin, cout, 1, stride, 0, hw)  # downsample branch
            cin, hw = cout, mid
    return rows


@pytest.fixture(scope="module")
def rn18() -> nn.Module:
    return resnet18(weights=None)


def test_resnet18_cio_by_hand(rn18: nn.Module) -> None:
    expected = _resnet18_convs(224, 224)
    assert len(expected) == 20
    r = conv_cio(rn18, (1, 3, 224, 224))
    assert len(r.rows) == 20
    assert r.cio == sum(i + o for _, i, o, _ in expected)
    assert r.macs == sum(m for *_, m in expected)
    assert r.macs == 1_813_561_344  # resnet18's conv MACs (1.82 GMAC with the fc)
    # layer1: four 64x56x56 -> 64x56x56 convs
    assert r.components["layer1"]["cio"] == 4 * 2 * 64 * 56 * 56
    assert r.components["conv1"] == {
        "cio": 3 * 224 * 224 + 64 * 112 * 112,
        "in_elements": 150528,
        "out_elements": 802816,
        "params": 64 * 3 * 49,
        "macs": 64 * 112 * 112 * 3 * 49,
        "layers": 1,
    }
    for comp in ("conv1", "layer1", "layer2", "layer3", "layer4"):
        assert r.components[comp]["cio"] == sum(i + o for c, i, o, _ in expected if c == comp)
    assert r.components["layer2"]["layers"] == 5
    conv_weights = sum(m.weight.numel() for m in rn18.modules() if isinstance(m, nn.Conv2d))
    assert r.params == conv_weights  # resnet convs have no bias


def test_resnet18_non_square_and_component_mapping(rn18: nn.Module) -> None:
    expected = _resnet18_convs(72, 40)
    mapping = {"conv1": "stem", "layer1": "stem", "layer2": "body", "": "deep"}
    r = conv_cio(rn18, (1, 3, 72, 40), components=mapping)
    assert r.cio == sum(i + o for _, i, o, _ in expected)
    comps = r.components
    assert set(comps) == {"stem", "body", "deep"}
    stem = sum(i + o for c, i, o, _ in expected if c in ("conv1", "layer1"))
    assert comps["stem"]["cio"] == stem
    assert comps["deep"]["layers"] == 10  # layer3 + layer4 fall through to ""


# ---------------------------------------------------------------------------------------------
# DRAM traffic and roofline
# ---------------------------------------------------------------------------------------------


def test_bytes_and_dram_traffic() -> None:
    assert BYTES_PER_ELEMENT == {"fp32": 4, "fp16": 2, "int8": 1}
    assert bytes_per_element("half") == 2 and bytes_per_element("FP32") == 4
    with pytest.raises(EdgesegError, match="unknown precision"):
        bytes_per_element("fp8")
    assert dram_traffic_mb(5120, 4) == pytest.approx(0.02048)
    assert dram_traffic_mb(1_000_000, 2, weight_bytes=500_000) == pytest.approx(2.5)
    r = conv_cio(nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1)), (1, 3, 32, 32))
    assert r.dram_mb("int8", weights=False) == pytest.approx(5120 / 1e6)
    assert r.dram_mb("fp16") == pytest.approx((5120 * 2 + 224 * 2) / 1e6)
    d = r.to_dict()
    assert (
        d["cio"] == 5120
        and d["rows"][0]["cio"] == 5120
        and set(d["dram_mb"]) == {"fp32", "fp16", "int8"}
    )


def test_roofline_compute_bound() -> None:
    r = roofline(gflops=10.0, dram_mb=100.0, peak_tflops=5.0, dram_gbs=200.0)
    assert r["compute_ms"] == pytest.approx(2.0)  # 10 GFLOP / 5000 GFLOP/s
    assert r["memory_ms"] == pytest.approx(0.5)  # 0.1 GB / 200 GB/s
    assert r["latency_floor_ms"] == pytest.approx(2.0)
    assert r["fps_ceiling"] == pytest.approx(500.0)
    assert r["bound"] == "compute"
    assert r["arithmetic_intensity"] == pytest.approx(100.0)  # FLOP per byte
    assert r["ridge_point"] == pytest.approx(25.0)
    assert r["attainable_tflops"] == pytest.approx(5.0)


def test_roofline_memory_bound_and_efficiency() -> None:
    r = roofline(gflops=1.0, dram_mb=400.0, peak_tflops=5.0, dram_gbs=100.0)
    assert r["bound"] == "memory"
    assert r["latency_floor_ms"] == pytest.approx(4.0)
    assert r["fps_ceiling"] == pytest.approx(250.0)
    assert r["arithmetic_intensity"] == pytest.approx(2.5)
    assert r["attainable_tflops"] == pytest.approx(0.25)
    assert achieved_gflops_per_s(2.0, 10.0) == pytest.approx(200.0)
    assert efficiency(2.0, 10.0, peak_gflops_per_s=800.0) == pytest.approx(0.25)
    with pytest.raises(EdgesegError, match="dram_gbs"):
        roofline(1.0, 1.0, 1.0, 0.0)
