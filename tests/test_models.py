"""DESANet structure, parameter budget, shapes and backbone-checkpoint compatibility."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgeseg.errors import EdgesegError
from edgeseg.models.backbones import hardnet68ds_backbone, load_backbone_weights, resnet18_backbone
from edgeseg.models.desanet import build_model, desanet_hn, desanet_rn
from edgeseg.models.hardnet import HarDNet68ds, hdb_links
from edgeseg.models.summary import model_summary

DATA = Path(__file__).parent / "data"

# Paper Table 1 and the cost budget of issue 3 (GFLOPs at 512x1024, multiply-add = 2).
TARGETS = {"desanet-hn": (6.2e6, 60.0), "desanet-rn": (15.3e6, 80.0)}


@pytest.mark.parametrize("variant", sorted(TARGETS))
def test_params_and_flops_within_budget(variant: str) -> None:
    s = model_summary(variant, 512, 1024)
    params, gflops = TARGETS[variant]
    assert abs(s["params_total"] - params) / params < 0.05
    assert 0 < s["gflops"] <= gflops
    assert sum(s["params_by_component"].values()) == s["params_total"]
    assert "aux_head" not in s["params_by_component"]


def test_every_paper_component_present() -> None:
    names = {type(m).__name__ for m in desanet_hn().modules()}
    for comp in ("SpatialPath", "ContextPath", "RefinementModule", "StripPooling", "FASPPM",
                 "FeatureFusionModule", "SkipConnection", "SCSE", "DeformableConv2d", "SegHead"):
        assert comp in names
    dilations = [m[0].dilation for m in desanet_rn().skip.atrous]
    assert dilations == [(1, 1), (3, 3), (6, 6)]


def test_train_mode_forward_backward() -> None:
    torch.manual_seed(0)
    model = desanet_hn().train()
    x = torch.randn(2, 3, 256, 512)
    main, aux = model(x)
    assert main.shape == aux.shape == (2, 19, 256, 512)
    (main.square().mean() + aux.square().mean()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the deformable conv's offsets learn from the start even though they are zero-initialised
    assert model.spatial_path.deform.offset.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("hw", [(360, 640), (513, 1025), (97, 131)])
def test_eval_any_size_returns_main_only(hw: tuple[int, int]) -> None:
    model = desanet_rn().eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *hw))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 19, *hw)


def test_dcn_impls_agree_inside_model() -> None:
    torch.manual_seed(0)
    model = desanet_hn().eval()
    torch.nn.init.normal_(model.spatial_path.deform.offset.weight, std=0.05)
    x = torch.randn(1, 3, 128, 192)
    with torch.no_grad():
        model.set_dcn_impl("native")
        a = model(x)
        model.set_dcn_impl("portable")
        b = model(x)
    assert (a - b).abs().max() < 1e-4


def test_hdb_link_rule() -> None:
    # layer 4 links to 3, 2, 0; layer 6 to 5, 4; layer 8 to 7, 6, 4, 0
    assert hdb_links(4, 64, 14, 1.7)[2] == [3, 2, 0]
    assert hdb_links(6, 64, 14, 1.7)[2] == [5, 4]
    assert hdb_links(8, 64, 14, 1.7)[2] == [7, 6, 4, 0]
    assert hdb_links(1, 64, 14, 1.7)[:2] == (14, 64)  # growth rate, reads the block input


def test_hardnet_keys_match_official_checkpoint_layout() -> None:
    ref = json.loads((DATA / "hardnet68ds_reference_keys.json").read_text())["keys"]
    full = HarDNet68ds(drop_last_block=False).state_dict()
    # the reference also has the classifier (base.16), which we never build
    ref_trunk = {k: v for k, v in ref.items() if not k.startswith("base.16.")}
    assert {k: list(v.shape) for k, v in full.items()} == ref_trunk
    trunk = hardnet68ds_backbone().state_dict()
    assert set(trunk) == {k for k in ref if int(k.split(".")[1]) < 14}
    n = sum(p.numel() for p in hardnet68ds_backbone().parameters())
    assert n == 1_480_300  # DESIGN.md: base[0:14]


def test_resnet18_keys_match_torchvision() -> None:
    from torchvision.models import resnet18

    ref = {k: v.shape for k, v in resnet18().state_dict().items() if not k.startswith("fc.")}
    ours = {k: v.shape for k, v in resnet18_backbone().state_dict().items()}
    assert ours == ref


def _fake_hardnet_checkpoint(tmp_path: Path) -> tuple[Path, dict]:
    ref = json.loads((DATA / "hardnet68ds_reference_keys.json").read_text())["keys"]
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v, generator=g) if v else torch.tensor(7) for k, v in ref.items()}
    path = tmp_path / "hardnet68ds-632474d2.pth"
    torch.save(state, path)
    return path, state


def test_backbone_weights_load_strictly(tmp_path: Path) -> None:
    path, state = _fake_hardnet_checkpoint(tmp_path)
    model = desanet_hn(backbone_weights=str(path))
    got = model.context_path.backbone.state_dict()
    for k in ("base.0.conv.weight", "base.13.dwconv.weight", "base.11.layers.15.layer2.norm.bias"):
        assert torch.equal(got[k], state[k])


def test_backbone_weights_mismatch_is_one_line(tmp_path: Path) -> None:
    path, state = _fake_hardnet_checkpoint(tmp_path)
    state["base.3.layers.0.layer1.conv.weight"] = torch.zeros(1, 2, 3, 3)
    torch.save(state, path)
    with pytest.raises(EdgesegError, match=r"shape key base\.3\.layers\.0\.layer1\.conv\.weight"):
        hardnet68ds_backbone(weights=path)
    # a ResNet-18 checkpoint is not a HarDNet one
    from torchvision.models import resnet18

    rn = tmp_path / "resnet18.pth"
    torch.save(resnet18().state_dict(), rn)
    with pytest.raises(EdgesegError) as e:
        load_backbone_weights(HarDNet68ds(), rn, "hardnet68ds")
    assert "\n" not in str(e.value) and "missing key" in str(e.value)
    resnet18_backbone(weights=rn)  # and it does load where it belongs


def test_unknown_variant() -> None:
    with pytest.raises(EdgesegError, match="expected one of desanet-hn, desanet-rn"):
        build_model("desanet-xx")
