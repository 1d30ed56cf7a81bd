"""torch2trt converters against a fake TensorRT: argument normalisation, enum mapping, plugin
wiring, and the standard-layer deformable conv evaluated by a small torch emulator of the layers
it uses (so its maths is checked against torchvision without TensorRT)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from edgeseg.deploy import torch2trt_converters as conv
from edgeseg.deploy.trt_compat import parity_tolerance
from edgeseg.errors import EdgesegError

HW_REASON = "needs TensorRT + CUDA (docker/Dockerfile.gpu or Jetson)"


# --- a fake TensorRT whose network computes with torch -----------------------------------------


class ETensor:
    """An emulated ITensor: its value is computed on demand from the layer that made it."""

    def __init__(self, fn: Callable[[], torch.Tensor], name: str = "") -> None:
        self._fn, self._value, self.name = fn, None, name

    def value(self) -> torch.Tensor:
        if self._value is None:
            self._value = self._fn()
        return self._value


class ELayer(SimpleNamespace):
    def __init__(self, kind: str, fn: Callable[[ELayer], torch.Tensor], **attrs: Any) -> None:
        super().__init__(kind=kind, **attrs)
        self._out = ETensor(lambda: fn(self), name=kind)

    def get_output(self, index: int) -> ETensor:
        assert index == 0
        return self._out


def _reshape(v: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return v.reshape([v.shape[i] if d == 0 else d for i, d in enumerate(dims)])


class EmulatedNetwork:
    """The INetworkDefinition methods the converters call, evaluated with torch; records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def add_constant(self, shape: tuple[int, ...], array: np.ndarray) -> ELayer:
        self.calls.append(("constant", array))
        assert tuple(array.shape) == tuple(shape)
        return ELayer("constant", lambda _layer: torch.from_numpy(np.array(array)), array=array)

    def add_gather(self, inp: ETensor, idx: ETensor, axis: int) -> ELayer:
        self.calls.append(("gather", axis))
        return ELayer("gather", lambda _layer: inp.value().index_select(axis, idx.value().long()))

    def add_elementwise(self, a: ETensor, b: ETensor, op: str) -> ELayer:
        self.calls.append(("elementwise", op))
        fn = {"PROD": torch.mul, "SUM": torch.add}[op]
        return ELayer("elementwise", lambda _layer: fn(a.value(), b.value()))

    def add_shuffle(self, inp: ETensor) -> ELayer:
        self.calls.append(("shuffle", None))

        def run(layer: ELayer) -> torch.Tensor:
            v = inp.value()
            if layer.first_transpose is not None:
                v = v.permute(*layer.first_transpose)
            if layer.reshape_dims is not None:
                v = _reshape(v, layer.reshape_dims)
            if layer.second_transpose is not None:
                v = v.permute(*layer.second_transpose)
            return v

        return ELayer(
            "shuffle", run, first_transpose=None, reshape_dims=None, second_transpose=None
        )

    def add_grid_sample(self, inp: ETensor, grid: ETensor) -> ELayer:
        self.calls.append(("grid_sample", None))
        modes = {"LINEAR": "bilinear", "NEAREST": "nearest", "CUBIC": "bicubic"}
        pads = {"FILL": "zeros", "CLAMP": "border", "REFLECT": "reflection"}

        def run(layer: ELayer) -> torch.Tensor:
            return F.grid_sample(
                inp.value(),
                grid.value(),
                mode=modes[layer.interpolation_mode],
                padding_mode=pads[layer.sample_mode],
                align_corners=layer.align_corners,
            )

        return ELayer(
            "grid_sample", run, interpolation_mode="LINEAR", sample_mode="FILL", align_corners=False
        )

    def add_convolution_nd(
        self,
        inp: ETensor,
        cout: int,
        kshape: tuple[int, int],
        kernel: np.ndarray,
        bias: np.ndarray | None,
    ) -> ELayer:
        self.calls.append(("convolution", kshape))
        assert kernel.shape[0] == cout and tuple(kernel.shape[2:]) == tuple(kshape)
        b = None if bias is None else torch.from_numpy(bias)
        return ELayer("convolution", lambda _layer: F.conv2d(inp.value(), torch.from_numpy(kernel), b))

    def _plugin(self, kind: str, inputs: list[ETensor], plugin: Any) -> ELayer:
        self.calls.append((kind, (inputs, plugin)))
        f = plugin.fields

        def run(layer: ELayer) -> torch.Tensor:  # what ModulatedDeformConv2d computes
            x, offset, mask, weight, *bias = (t.value() for t in inputs)
            return deform_conv2d(
                x,
                offset,
                weight,
                bias[0] if bias else None,
                stride=tuple(f["stride"]),
                padding=tuple(f["padding"]),
                dilation=tuple(f["dilation"]),
                mask=mask,
            )

        return ELayer(kind, run, inputs=inputs, plugin=plugin)

    def add_plugin_v2(self, inputs: list[ETensor], plugin: Any) -> ELayer:
        return self._plugin("plugin_v2", inputs, plugin)

    def add_plugin_v3(self, inputs: list[ETensor], shape_inputs: list, plugin: Any) -> ELayer:
        assert shape_inputs == []
        return self._plugin("plugin_v3", inputs, plugin)

    def kinds(self) -> list[str]:
        return [k for k, _ in self.calls]


class FakeCreator:
    def __init__(self, version: str) -> None:
        self.version = version

    def create_plugin(self, name: str, fc: list, phase: str | None = None) -> Any:
        assert name == "ModulatedDeformConv2d"
        assert (phase == "BUILD") is (self.version == "2")
        assert all(t == "INT32" for _, _, t in fc)
        return SimpleNamespace(version=self.version, fields={k: v.tolist() for k, v, _ in fc})


class FakeRegistry:
    def __init__(self, versions: tuple[str, ...]) -> None:
        self.versions = versions

    def get_plugin_creator(self, name: str, version: str, namespace: str) -> Any:
        return FakeCreator("1") if version == "1" and "1" in self.versions else None

    def get_creator(self, name: str, version: str, namespace: str) -> Any:
        # As the binding does (10.13 stubs, IPluginRegistry.get_creator): None when absent.
        return FakeCreator(version) if version in self.versions else None


def fake_trt(version: str = "10.3.0.30", plugins: tuple[str, ...] = ("1",)) -> Any:
    registry = FakeRegistry(plugins)
    from tests.trt_fakes import stub_module

    return SimpleNamespace(
        __version__=version,
        get_plugin_registry=lambda: registry,
        init_libnvinfer_plugins=lambda logger, namespace: True,
        ILogger=stub_module().ILogger,
        PluginField=lambda name, data, kind: (name, data, kind),
        PluginFieldCollection=list,
        PluginFieldType=SimpleNamespace(INT32="INT32"),
        TensorRTPhase=SimpleNamespace(BUILD="BUILD"),
        ElementWiseOperation=SimpleNamespace(PROD="PROD", SUM="SUM"),
        InterpolationMode=SimpleNamespace(LINEAR="LINEAR", NEAREST="NEAREST", CUBIC="CUBIC"),
        SampleMode=SimpleNamespace(FILL="FILL", CLAMP="CLAMP", REFLECT="REFLECT"),
    )


def _as_input(t: torch.Tensor, name: str) -> torch.Tensor:
    t._trt = ETensor(lambda: t, name=name)  # type: ignore[attr-defined]
    return t


def _dcn_case(
    seed: int = 0,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 1,
    dilation: int | tuple[int, int] = 1,
    bias: bool = False,
    mask: bool = False,
    size: tuple[int, int] = (9, 13),
) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, *size, generator=g)
    w = torch.randn(5, 4, 3, 3, generator=g)
    s, p, d = (v if isinstance(v, tuple) else (v, v) for v in (stride, padding, dilation))
    ho = (size[0] + 2 * p[0] - d[0] * 2 - 1) // s[0] + 1
    wo = (size[1] + 2 * p[1] - d[1] * 2 - 1) // s[1] + 1
    offset = 2.5 * torch.randn(2, 18, ho, wo, generator=g)  # reaches past the borders too
    return {
        "input": x,
        "offset": offset,
        "weight": w,
        "bias": torch.randn(5, generator=g) if bias else None,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "mask": torch.rand(2, 9, ho, wo, generator=g) if mask else None,
    }


def _ctx(case: dict[str, Any], network: EmulatedNetwork) -> SimpleNamespace:
    x = _as_input(case["input"], "x")
    offset = _as_input(case["offset"], "offset")
    args = (x, offset, case["weight"], case["bias"])
    kwargs = {k: case[k] for k in ("stride", "padding", "dilation")}
    if case["mask"] is not None:
        kwargs["mask"] = _as_input(case["mask"], "mask")
    out = deform_conv2d(*args, **kwargs)
    return SimpleNamespace(
        method_args=args, method_kwargs=kwargs, method_return=out, network=network, logger=None
    )


@pytest.fixture
def use_trt(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    from edgeseg.runtime import trt_engine

    monkeypatch.setattr(trt_engine, "_process", {"logger": None, "plugins": False})

    def install(*args: Any, dcn: str = "auto", **kw: Any) -> Any:
        trt = fake_trt(*args, **kw)
        monkeypatch.setattr(conv, "_tensorrt", lambda: trt)
        monkeypatch.setitem(conv._settings, "dcn", dcn)
        return trt

    return install


# --- normalise_deform_args ---------------------------------------------------------------------


def _tensors() -> tuple[torch.Tensor, ...]:
    return torch.zeros(1, 4, 8, 8), torch.zeros(1, 18, 8, 8), torch.zeros(6, 4, 3, 3)


def test_normalise_positional_with_int_params() -> None:
    x, off, w = _tensors()
    a = conv.normalise_deform_args((x, off, w, None, 1, 1, 1), {})
    assert a.stride == a.padding == a.dilation == (1, 1)
    assert a.bias is None and a.mask is None
    assert a.kernel_hw == (3, 3) and a.out_hw == (8, 8)
    assert a.groups == 1 and a.deformable_groups == 1


def test_normalise_keyword_tuples_and_defaults() -> None:
    x, off, w = _tensors()
    b, m = torch.zeros(6), torch.ones(1, 9, 8, 8)
    a = conv.normalise_deform_args(
        (x,),
        {
            "offset": off,
            "weight": w,
            "bias": b,
            "stride": (2, 2),
            "padding": [1, 1],
            "dilation": (1, 1),
            "mask": m,
        },
    )
    assert a.stride == (2, 2) and a.padding == (1, 1) and a.bias is b and a.mask is m
    # how DeformableConv2d.forward calls it: 4 positional + keywords, defaults for the rest
    a = conv.normalise_deform_args((x, off, w, None), {"stride": (1, 1), "padding": (1, 1)})
    assert a.dilation == (1, 1) and a.mask is None
    a = conv.normalise_deform_args((x, off, w), {})
    assert (a.stride, a.padding, a.dilation) == ((1, 1), (0, 0), (1, 1))


def test_normalise_groups_from_shapes() -> None:
    x = torch.zeros(1, 8, 8, 8)
    a = conv.normalise_deform_args((x, torch.zeros(1, 36, 8, 8), torch.zeros(4, 4, 3, 3)), {})
    assert a.groups == 2 and a.deformable_groups == 2


@pytest.mark.parametrize(
    "make, err, match",
    [
        (lambda x, o, w: ((x, o, w, None, 1, 1, 1, None, 9), {}), TypeError, "positional"),
        (lambda x, o, w: ((x, o, w), {"weight": w}), TypeError, "multiple values"),
        (lambda x, o, w: ((x, o, w), {"groups": 2}), TypeError, "unexpected keyword"),
        (lambda x, o, w: ((x, o), {}), TypeError, "missing required argument 'weight'"),
        (lambda x, o, w: ((x, o, w), {"stride": (1, 2, 3)}), TypeError, "int or a pair"),
        (lambda x, o, w: ((x, torch.zeros(1, 10, 8, 8), w), {}), EdgesegError, "multiple of 18"),
        (lambda x, o, w: ((x, o, w), {"mask": torch.ones(1, 4, 8, 8)}), ValueError, "mask"),
        (lambda x, o, w: ((x, o, w, torch.zeros(3)), {}), ValueError, "bias"),
        (lambda x, o, w: ((x, o, torch.zeros(6, 3, 3, 3)), {}), ValueError, "divisible"),
    ],
)
def test_normalise_rejects(make: Callable, err: type, match: str) -> None:
    args, kwargs = make(*_tensors())
    with pytest.raises(err, match=match):
        conv.normalise_deform_args(args, kwargs)


# --- grid sample -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, padding, align, expected",
    [
        ("bilinear", "zeros", False, ("LINEAR", "FILL", False)),
        ("nearest", "border", True, ("NEAREST", "CLAMP", True)),
        ("bicubic", "reflection", None, ("CUBIC", "REFLECT", False)),
    ],
)
def test_grid_sample_modes(mode: str, padding: str, align: bool | None, expected: tuple) -> None:
    assert conv.grid_sample_modes(mode, padding, align) == expected


def test_grid_sample_modes_rejects() -> None:
    with pytest.raises(EdgesegError, match="mode 'area'"):
        conv.grid_sample_modes("area", "zeros", False)
    with pytest.raises(EdgesegError, match="padding_mode 'circular'"):
        conv.grid_sample_modes("bilinear", "circular", False)


def test_normalise_grid_sample_args() -> None:
    x, g = torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 3, 2)
    a = conv.normalise_grid_sample_args((x, g), {})
    assert (a.mode, a.padding_mode, a.align_corners) == ("bilinear", "zeros", False)
    a = conv.normalise_grid_sample_args((x, g, "nearest"), {"align_corners": True})
    assert (a.mode, a.align_corners) == ("nearest", True)
    with pytest.raises(ValueError, match="4-D"):
        conv.normalise_grid_sample_args(
            (torch.zeros(1, 2, 4, 4, 4), torch.zeros(1, 3, 3, 3, 3)), {}
        )


def test_convert_grid_sample_sets_layer(use_trt: Callable) -> None:
    use_trt()
    g = torch.Generator().manual_seed(0)
    x = _as_input(torch.randn(1, 2, 5, 6, generator=g), "x")
    grid = _as_input(torch.rand(1, 3, 4, 2, generator=g) * 2.4 - 1.2, "grid")
    out = F.grid_sample(x, grid, "bilinear", "border", align_corners=True)
    net = EmulatedNetwork()
    ctx = SimpleNamespace(
        method_args=(x, grid),
        method_kwargs={"padding_mode": "border", "align_corners": True},
        method_return=out,
        network=net,
    )
    conv.convert_grid_sample(ctx)
    assert net.kinds() == ["grid_sample"]
    assert out._trt.name == "grid_sample"
    torch.testing.assert_close(out._trt.value(), out)


# --- deformable conv: plugin wiring ------------------------------------------------------------


@pytest.mark.parametrize(
    "version, plugins, expected_kind, expected_version",
    [
        ("8.6.2.3", ("1",), "plugin_v2", "1"),
        ("10.3.0.30", ("1",), "plugin_v2", "1"),
        ("10.13.0.35", ("1", "2"), "plugin_v3", "2"),  # v2 (IPluginV3) preferred from 10.11
        ("10.13.0.35", ("1",), "plugin_v2", "1"),  # v2 missing: v1 still registered
    ],
)
def test_plugin_inputs_in_order_with_ones_mask(
    use_trt: Callable,
    version: str,
    plugins: tuple[str, ...],
    expected_kind: str,
    expected_version: str,
) -> None:
    use_trt(version, plugins)
    case = _dcn_case(bias=True)
    net = EmulatedNetwork()
    ctx = _ctx(case, net)
    conv.convert_deform_conv2d(ctx)

    ((kind, (inputs, plugin)),) = [c for c in net.calls if c[0].startswith("plugin")]
    assert kind == expected_kind and plugin.version == expected_version
    assert plugin.fields == {
        "stride": [1, 1],
        "padding": [1, 1],
        "dilation": [1, 1],
        "group": [1],
        "deformable_group": [1],
    }
    x, offset, mask, weight, bias = inputs
    assert x is case["input"]._trt and offset is case["offset"]._trt
    ones = mask.value()
    assert ones.shape == (2, 9, *case["offset"].shape[2:]) and bool((ones == 1).all())
    torch.testing.assert_close(weight.value(), case["weight"])
    torch.testing.assert_close(bias.value(), case["bias"])
    layer_out = ctx.method_return._trt
    assert layer_out.name == expected_kind
    torch.testing.assert_close(layer_out.value(), ctx.method_return, rtol=1e-4, atol=1e-4)


def test_plugin_without_bias_and_with_mask(use_trt: Callable) -> None:
    use_trt("10.3.0")
    case = _dcn_case(mask=True)
    net = EmulatedNetwork()
    ctx = _ctx(case, net)
    conv.convert_deform_conv2d(ctx)
    ((_, (inputs, _)),) = [c for c in net.calls if c[0].startswith("plugin")]
    assert len(inputs) == 4 and inputs[2] is case["mask"]._trt
    torch.testing.assert_close(
        ctx.method_return._trt.value(), ctx.method_return, rtol=1e-4, atol=1e-4
    )


def test_plugin_mode_requires_the_plugin(use_trt: Callable) -> None:
    use_trt("10.3.0", plugins=(), dcn="plugin")
    with pytest.raises(EdgesegError, match="no ModulatedDeformConv2d plugin"):
        conv.convert_deform_conv2d(_ctx(_dcn_case(), EmulatedNetwork()))


# --- deformable conv: standard-layer fallback --------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},  # DESANet: 3x3, stride 1, padding 1
        {"bias": True, "mask": True},
        {"stride": 2, "padding": 1, "bias": True},
        {"stride": 1, "padding": 2, "dilation": 2, "size": (11, 7)},
        {"stride": (2, 1), "padding": (1, 0), "mask": True},  # asymmetric: the plugin can't
    ],
    ids=["desanet", "bias-mask", "stride2", "dilation2", "asymmetric"],
)
def test_standard_layer_fallback_matches_torchvision(
    use_trt: Callable, params: dict[str, Any]
) -> None:
    use_trt("10.3.0", plugins=())  # no plugin registered: auto falls back
    case = _dcn_case(seed=1, **params)
    net = EmulatedNetwork()
    ctx = _ctx(case, net)
    conv.convert_deform_conv2d(ctx)
    assert not [k for k in net.kinds() if k.startswith("plugin")]
    assert net.kinds().count("grid_sample") == 1 and net.kinds().count("convolution") == 1
    torch.testing.assert_close(
        ctx.method_return._trt.value(), ctx.method_return, rtol=1e-4, atol=1e-4
    )


def test_native_mode_skips_the_plugin(use_trt: Callable) -> None:
    use_trt("10.13.0", plugins=("1", "2"), dcn="native")
    net = EmulatedNetwork()
    ctx = _ctx(_dcn_case(), net)
    conv.convert_deform_conv2d(ctx)
    assert "grid_sample" in net.kinds() and "plugin_v3" not in net.kinds()


def test_fallback_refuses_groups(use_trt: Callable) -> None:
    use_trt("10.3.0", plugins=())
    x = _as_input(torch.zeros(1, 8, 6, 6), "x")
    off = _as_input(torch.zeros(1, 36, 6, 6), "offset")
    ctx = SimpleNamespace(
        method_args=(x, off, torch.zeros(4, 4, 3, 3)),
        method_kwargs={},
        method_return=torch.zeros(1, 4, 4, 4),
        network=EmulatedNetwork(),
    )
    with pytest.raises(EdgesegError, match="group=1, deformable_group=1 only"):
        conv.convert_deform_conv2d(ctx)


def test_grid_constants_shapes() -> None:
    swap, scale, shift = conv.deform_grid_constants(
        (8, 16), (8, 16), (3, 3), (1, 1), (1, 1), (1, 1)
    )
    assert swap.tolist()[:6] == [1, 0, 3, 2, 5, 4] and swap.dtype == np.int32
    assert scale.shape == (1, 18, 1, 1) and scale[0, 0, 0, 0] == 2 / 16
    assert shift.shape == (1, 18, 8, 16)
    # centre tap (t=4), zero offset at pixel (i, j) samples the pixel centre itself
    i, j = 3, 5
    assert shift[0, 8, i, j] == pytest.approx((2 * j + 1) / 16 - 1)
    assert shift[0, 9, i, j] == pytest.approx((2 * i + 1) / 8 - 1)


# --- registration and hardware -----------------------------------------------------------------


@pytest.mark.skipif(conv.torch2trt_available(), reason="torch2trt is installed here")
def test_register_without_torch2trt_is_a_no_op() -> None:
    assert conv.register() is False
    with pytest.raises(EdgesegError, match="unknown deformable conv mode"):
        conv.register("fast")  # type: ignore[arg-type]


def _hw_ready() -> bool:
    from edgeseg.deploy.tensorrt import tensorrt_available

    return tensorrt_available() and conv.torch2trt_available() and torch.cuda.is_available()


@pytest.mark.skipif(not _hw_ready(), reason=HW_REASON + " with torch2trt")
@pytest.mark.parametrize("impl", ["native", "portable"])
@pytest.mark.parametrize("dcn", ["plugin", "native"])
def test_torch2trt_deformable_conv_matches_torch(impl: str, dcn: str) -> None:
    from torch2trt import torch2trt

    from edgeseg.models.deform import DeformableConv2d

    assert conv.register(dcn)  # type: ignore[arg-type]
    torch.manual_seed(0)
    m = DeformableConv2d(16, 32, impl=impl).cuda().eval()  # type: ignore[arg-type]
    torch.nn.init.normal_(m.offset.weight, std=0.1)
    x = torch.randn(1, 16, 24, 40, device="cuda")
    trt_m = torch2trt(m, [x])
    # TensorRT runs FP32 convs in TF32 by default (10-bit mantissa): through the offset conv
    # that is ~6e-4 of error, so the tolerance follows the precision the engine actually used.
    tol = parity_tolerance("fp32", tf32=True)
    torch.testing.assert_close(trt_m(x), m(x), rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "precision, tf32, expected",
    [("fp32", False, 1e-4), ("fp32", True, 3e-3), ("fp16", False, 3e-2), ("int8", True, 3e-1)],
)
def test_parity_tolerance_follows_the_precision(precision: str, tf32: bool, expected: float) -> None:
    assert parity_tolerance(precision, tf32=tf32) == expected


def test_tf32_error_through_a_conv_exceeds_the_old_tolerance() -> None:
    """Why 1e-3 was wrong for a TF32 build: round the operands of a 3x3x16 conv to TF32 (10-bit
    mantissa, as TensorRT's FP32 tactics do on Ampere) and compare with float32."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(1, 16, 24, 40, generator=g), torch.randn(32, 16, 3, 3, generator=g) * 0.1

    def tf32(t: torch.Tensor) -> torch.Tensor:
        bits = (t.view(torch.int32) + 0x1000) & ~0x1FFF  # round to 10 mantissa bits
        return bits.view(torch.float32)

    got, ref = F.conv2d(tf32(x), tf32(w), padding=1), F.conv2d(x, w, padding=1)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3)
    tol = parity_tolerance("fp32", tf32=True)
    torch.testing.assert_close(got, ref, rtol=tol, atol=tol)


def test_native_impl_calls_the_attribute_torch2trt_patches(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch2trt replaces ``torchvision.ops.deform_conv.deform_conv2d`` (DEFORM_CONV2D) while it
    traces: the native deformable conv must look it up there at call time."""
    import importlib

    from edgeseg.models.deform import DeformableConv2d

    module_name, attr = conv.DEFORM_CONV2D.rsplit(".", 1)
    module = importlib.import_module(module_name)
    real = getattr(module, attr)
    calls: list[tuple[int, ...]] = []

    def patched(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(tuple(args[0].shape))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, attr, patched)
    m = DeformableConv2d(4, 6, impl="native").eval()
    with torch.no_grad():
        m(torch.randn(1, 4, 8, 8))
    assert calls == [(1, 4, 8, 8)]


def test_auto_mode_routes_asymmetric_params_to_layers(use_trt: Callable) -> None:
    use_trt("10.3.0", plugins=("1",))  # plugin present, but it reads 2-value fields transposed
    net = EmulatedNetwork()
    ctx = _ctx(_dcn_case(stride=(2, 1), padding=(1, 0)), net)
    conv.convert_deform_conv2d(ctx)
    assert "plugin_v2" not in net.kinds()
    torch.testing.assert_close(
        ctx.method_return._trt.value(), ctx.method_return, rtol=1e-4, atol=1e-4
    )


def test_converter_registers_plugins_with_the_process_logger(use_trt: Callable) -> None:
    """init_libnvinfer_plugins keeps a raw pointer to its logger: never torch2trt's ctx.logger
    or a temporary, always the one process-wide logger, registered once."""
    from unittest import mock

    from edgeseg.runtime import trt_engine as trt_mod

    trt = use_trt("10.3.0", plugins=("1",))
    trt.init_libnvinfer_plugins = mock.Mock(return_value=True)
    for _ in range(2):
        ctx = _ctx(_dcn_case(), EmulatedNetwork())
        ctx.logger = object()
        conv.convert_deform_conv2d(ctx)
    trt.init_libnvinfer_plugins.assert_called_once_with(trt_mod._process["logger"], "")
    assert isinstance(trt_mod._process["logger"], trt.ILogger)
