"""The data layer: Cityscapes label table, dataset, synthetic scenes, augmentation, `data synth`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeseg.data import MEAN, STD
from edgeseg.data.cityscapes import (
    CLASSES,
    ID_TO_TRAIN_ID,
    LABELS,
    NUM_CLASSES,
    PALETTE,
    TRAIN_ID_TO_ID,
    CityscapesDataset,
    colorize,
    ids_to_train_ids,
    train_ids_to_ids,
)
from edgeseg.data.synthetic import generate_scene, scene_rng, write_synthetic_cityscapes
from edgeseg.data.transforms import (
    GridMask,
    build_eval_transform,
    build_train_transform,
    scale_crop_flip,
)
from edgeseg.errors import EdgesegError

# ------------------------------------------------------------------------------ label table


def test_label_table_facts() -> None:
    assert len(LABELS) == 35
    assert [lb.id for lb in LABELS[:-1]] == list(range(34)) and LABELS[-1].id == -1
    assert NUM_CLASSES == 19 and len(CLASSES) == 19 and len(PALETTE) == 19
    assert CLASSES[:3] == ("road", "sidewalk", "building") and CLASSES[-1] == "bicycle"
    train_label_ids = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
    assert [int(TRAIN_ID_TO_ID[t]) for t in range(19)] == train_label_ids
    for label_id in range(256):
        expected = train_label_ids.index(label_id) if label_id in train_label_ids else 255
        assert ID_TO_TRAIN_ID[label_id] == expected


def test_lut_round_trips() -> None:
    train_ids = np.arange(19, dtype=np.uint8)
    assert np.array_equal(ids_to_train_ids(train_ids_to_ids(train_ids)), train_ids)
    label_ids = TRAIN_ID_TO_ID[:19]
    assert np.array_equal(train_ids_to_ids(ids_to_train_ids(label_ids)), label_ids)
    assert train_ids_to_ids(np.array([255]))[0] == 0  # ignore -> unlabeled in a submission
    assert ID_TO_TRAIN_ID.flags.writeable is False


def test_palette_matches_official_colours() -> None:
    official = {
        "road": (128, 64, 128),
        "sidewalk": (244, 35, 232),
        "building": (70, 70, 70),
        "traffic sign": (220, 220, 0),
        "vegetation": (107, 142, 35),
        "sky": (70, 130, 180),
        "person": (220, 20, 60),
        "car": (0, 0, 142),
        "bicycle": (119, 11, 32),
    }
    for name, rgb in official.items():
        assert PALETTE[CLASSES.index(name)] == rgb
    img = colorize(np.array([[0, 13, 255]], np.uint8))
    assert img.tolist() == [[[128, 64, 128], [0, 0, 142], [0, 0, 0]]]


# ------------------------------------------------------------------------------ dataset


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "cs"
    write_synthetic_cityscapes(root, train=4, val=2, height=48, width=96, seed=3)
    return root


def test_dataset_reads_synthetic_layout(synth_root: Path) -> None:
    ds = CityscapesDataset(synth_root, "train")
    assert len(ds) == 4
    image, mask = ds[0]
    assert image.shape == (48, 96, 3) and image.dtype == np.uint8
    assert mask.shape == (48, 96) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= set(range(19)) | {255}
    assert ds.image_path(0).name.endswith("_000019_leftImg8bit.png")
    # the train ids file agrees with the label ids file through the LUT
    import cv2

    stem = ds.image_path(0).name[: -len("_leftImg8bit.png")]
    ids = cv2.imread(
        str(
            synth_root
            / "gtFine/train"
            / ds.image_path(0).parent.name
            / f"{stem}_gtFine_labelIds.png"
        ),
        cv2.IMREAD_GRAYSCALE,
    )
    assert np.array_equal(mask, ID_TO_TRAIN_ID[ids])
    # RGB, not BGR: the PNG on disk is BGR
    bgr = cv2.imread(str(ds.image_path(0)))
    assert np.array_equal(image, bgr[:, :, ::-1])


def test_dataset_label_ids_only(synth_root: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "cs"
    shutil.copytree(synth_root, root)
    for f in root.glob("gtFine/*/*/*_gtFine_labelTrainIds.png"):
        f.unlink()
    a, b = CityscapesDataset(synth_root, "val"), CityscapesDataset(root, "val")
    assert len(a) == len(b) == 2
    for i in range(2):
        assert np.array_equal(a[i][1], b[i][1])
    assert not b.samples[0][2]  # read through the LUT


def test_trainval_is_train_plus_val(synth_root: Path) -> None:
    tr, va = CityscapesDataset(synth_root, "train"), CityscapesDataset(synth_root, "val")
    tv = CityscapesDataset(synth_root, "trainval")
    assert len(tv) == 6
    assert [tv.image_path(i) for i in range(6)] == [tr.image_path(i) for i in range(4)] + [
        va.image_path(i) for i in range(2)
    ]


def test_dataset_transform_applies(synth_root: Path) -> None:
    ds = CityscapesDataset(synth_root, "val", transform=build_eval_transform())
    x, y = ds[1]
    assert x.shape == (3, 48, 96) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_dataset_errors_name_the_path(synth_root: Path, tmp_path: Path) -> None:
    with pytest.raises(EdgesegError, match=f"root not found: {tmp_path / 'nope'}"):
        CityscapesDataset(tmp_path / "nope", "train")
    with pytest.raises(EdgesegError, match=str(synth_root / "leftImg8bit" / "test")):
        CityscapesDataset(synth_root, "test")
    with pytest.raises(EdgesegError, match="unknown Cityscapes split 'training'"):
        CityscapesDataset(synth_root, "training")
    empty = tmp_path / "empty"
    (empty / "leftImg8bit" / "train" / "city").mkdir(parents=True)
    with pytest.raises(EdgesegError, match=f"no \\*_leftImg8bit.png images under {empty}"):
        CityscapesDataset(empty, "train")
    img = empty / "leftImg8bit" / "train" / "city" / "city_000000_000019_leftImg8bit.png"
    img.write_bytes(b"")
    with pytest.raises(EdgesegError, match="no label for city_000000_000019_leftImg8bit.png"):
        CityscapesDataset(empty, "train")


# ------------------------------------------------------------------------------ generator


def test_generator_deterministic_and_varied() -> None:
    a = generate_scene(np.random.default_rng(5), 64, 128)
    b = generate_scene(np.random.default_rng(5), 64, 128)
    c = generate_scene(np.random.default_rng(6), 64, 128)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    rgb, ids = a
    assert rgb.shape == (64, 128, 3) and rgb.dtype == np.uint8
    assert ids.shape == (64, 128) and ids.dtype == np.uint8
    # scene i of a split depends on (seed, split, i) only
    assert np.array_equal(
        generate_scene(scene_rng(0, "val", 2), 32, 64)[1],
        generate_scene(scene_rng(0, "val", 2), 32, 64)[1],
    )


def test_generator_covers_many_classes() -> None:
    seen: set[int] = set()
    painted = {1} | {lb.id for lb in LABELS if 0 <= lb.train_id < NUM_CLASSES}  # ego + the 19
    for i in range(4):
        _, ids = generate_scene(scene_rng(0, "train", i), 128, 256)
        assert set(np.unique(ids).tolist()) <= painted
        seen |= set(np.unique(ID_TO_TRAIN_ID[ids]).tolist()) - {255}
    assert len(seen) >= 8, sorted(seen)


@pytest.fixture(scope="module")
def default_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The val split the shared training fixture and the demo use (128x256, seed 0, 24 images).
    Val image i depends on (seed, "val", i) only, so one train image is enough here."""
    root = tmp_path_factory.mktemp("val") / "cs"
    write_synthetic_cityscapes(root, train=1, val=24, height=128, width=256, seed=0, color=False)
    return root


def test_default_val_split_has_all_19_classes(default_val: Path) -> None:
    import cv2

    files = sorted((default_val / "gtFine" / "val").rglob("*_gtFine_labelTrainIds.png"))
    assert len(files) == 24
    pixels = np.zeros(256, np.int64)
    for f in files:
        pixels += np.bincount(cv2.imread(str(f), cv2.IMREAD_UNCHANGED).ravel(), minlength=256)
    missing = [CLASSES[k] for k in range(NUM_CLASSES) if pixels[k] == 0]
    assert not missing, missing
    # every class is a real object, not a stray pixel, and none swamps the scenes
    share = pixels[:NUM_CLASSES] / pixels.sum()
    assert share.min() > 5e-4 and share.max() < 0.4, dict(zip(CLASSES, share.round(4)))
    # the split does not depend on the train count: image 5 is scene (0, "val", 5)
    _, ids = generate_scene(scene_rng(0, "val", 5), 128, 256)
    got = cv2.imread(str(files[5]), cv2.IMREAD_UNCHANGED)
    assert files[5].name.startswith("texelheim_000005_")
    assert np.array_equal(got, ID_TO_TRAIN_ID[ids])


def test_new_road_users_deterministic_per_seed(default_val: Path) -> None:
    """Same seed, byte-identical files, for scenes with the two-wheelers, riders, trams,
    buses, trucks and walls (the 32x64 determinism test below is too small to show them)."""
    root = default_val.parent / "again"
    write_synthetic_cityscapes(root, train=1, val=6, height=128, width=256, seed=0, color=False)
    import cv2

    new = {12, 25, 27, 28, 31, 32, 33}
    seen: set[int] = set()
    for f in sorted(root.rglob("*.png")):
        rel = f.relative_to(root)
        assert f.read_bytes() == (default_val / rel).read_bytes(), rel
        if rel.name.endswith("_labelIds.png"):
            seen |= set(np.unique(cv2.imread(str(f), cv2.IMREAD_UNCHANGED)).tolist()) & new
    assert len(seen) >= 4, seen  # the comparison covered the new painters
    other = generate_scene(scene_rng(1, "val", 0), 128, 256)[1]
    assert not np.array_equal(other, generate_scene(scene_rng(0, "val", 0), 128, 256)[1])


def test_colours_overlap_between_classes() -> None:
    """No class is identified by its colour: per-class mean colours spread widely."""
    means: dict[int, list[np.ndarray]] = {}
    for i in range(12):
        rgb, ids = generate_scene(scene_rng(1, "train", i), 64, 128)
        for c in (7, 11, 26):
            sel = ids == c
            if sel.sum() > 20:
                means.setdefault(c, []).append(rgb[sel].mean(0))
    for c, ms in means.items():
        assert np.ptp(np.stack(ms), axis=0).max() > 40, c


def test_write_synthetic_layout_and_determinism(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    summary = write_synthetic_cityscapes(a, train=3, val=1, height=32, width=64, seed=9)
    write_synthetic_cityscapes(b, train=3, val=1, height=32, width=64, seed=9)
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*.png"))
    assert len(names) == 4 * 4
    assert "leftImg8bit/val/texelheim/texelheim_000000_000019_leftImg8bit.png" in names
    for suffix in ("labelIds", "labelTrainIds", "color"):
        assert f"gtFine/train/pixelburg/pixelburg_000000_000019_gtFine_{suffix}.png" in names
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    assert summary["splits"] == {"train": 3, "val": 1} and summary["ms_per_scene"] > 0
    assert json.loads((a / "edgeseg_synthetic.json").read_text())["seed"] == 9
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_write_synthetic_refuses_and_overwrites(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(EdgesegError, match="not empty"):
        write_synthetic_cityscapes(other, train=1, val=0, height=16, width=32)
    with pytest.raises(EdgesegError, match="not a synthetic dataset"):
        write_synthetic_cityscapes(other, train=1, val=0, height=16, width=32, overwrite=True)
    assert (other / "keep.txt").read_text() == "x"
    out = tmp_path / "ds"
    write_synthetic_cityscapes(out, train=2, val=1, height=16, width=32)
    write_synthetic_cityscapes(out, train=1, val=0, height=16, width=32, overwrite=True)
    assert len(list(out.rglob("*_leftImg8bit.png"))) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "other"]


def test_write_synthetic_failure_leaves_nothing(tmp_path: Path) -> None:
    calls = []

    def boom(split: str, done: int, total: int) -> None:
        calls.append(done)
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_synthetic_cityscapes(
            tmp_path / "ds", train=3, val=0, height=16, width=32, progress_cb=boom
        )
    assert calls == [1, 2] and list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ transforms


def _coded(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Blocky label map and an image whose red channel encodes the label: 20 + 11 * label."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 19, (h // 8 + 1, w // 8 + 1)).astype(np.uint8)
    mask = np.kron(cells, np.ones((8, 8), np.uint8))[:h, :w]
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = 20 + 11 * mask
    image[..., 1] = 100
    image[..., 2] = 200 - 5 * mask
    return image, mask


def _denorm(x: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return ((x * std + mean) * 255).permute(1, 2, 0).numpy()


def _interior(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 5x5 neighbourhood has one label, away from label boundaries, padding and
    the crop's edge (where the neighbourhood is cut off)."""
    import cv2

    m = mask.astype(np.uint8)
    k = np.ones((5, 5), np.uint8)
    inner = (cv2.dilate(m, k) == cv2.erode(m, k)) & (mask != 255)
    inner[:2], inner[-2:], inner[:, :2], inner[:, -2:] = False, False, False, False
    return inner


@pytest.mark.parametrize("geometry", ["cv2", "v2"])
def test_augmentation_keeps_image_and_mask_aligned(geometry: str) -> None:
    image, mask = _coded(96, 160)
    tf = build_train_transform((64, 96), gridmask=False, jitter=None, geometry=geometry)
    torch.manual_seed(0)
    checked = 0
    for _ in range(12):
        x, y = tf(image, mask)
        assert x.shape == (3, 64, 96) and x.dtype == torch.float32
        assert y.shape == (64, 96) and y.dtype == torch.int64
        rgb, lab = _denorm(x), y.numpy()
        inner = _interior(lab)
        decoded = np.rint((rgb[..., 0] - 20) / 11)
        assert np.array_equal(decoded[inner], lab[inner])
        assert np.abs(rgb[..., 1][inner] - 100).max() < 1.0
        checked += int(inner.sum())
    assert checked > 12 * 64 * 96 * 0.2


def test_scale_crop_flip_flips_and_pads() -> None:
    image, mask = _coded(40, 60)
    a_img, a_lab = scale_crop_flip(image, mask, 1.0, (50, 70), 0, 0, flip=False)
    b_img, b_lab = scale_crop_flip(image, mask, 1.0, (50, 70), 0, 0, flip=True)
    assert np.array_equal(a_img[::, ::-1], b_img) and np.array_equal(a_lab[:, ::-1], b_lab)
    assert np.array_equal(a_img[:40, :60], image) and np.array_equal(a_lab[:40, :60], mask)
    assert (a_lab[40:] == 255).all() and (a_lab[:, 60:] == 255).all()
    assert (a_img[40:] == 0).all() and (a_img[:, 60:] == 0).all()


def test_crop_pads_mask_with_255_and_image_with_zero() -> None:
    image, mask = _coded(40, 60)
    for geometry in ("cv2", "v2"):
        tf = build_train_transform(
            (128, 128), scale=(1.0, 1.0), gridmask=False, jitter=None, flip=False, geometry=geometry
        )
        torch.manual_seed(1)
        x, y = tf(image, mask)
        pad = y == 255
        assert int(pad.sum()) == 128 * 128 - 40 * 60, geometry
        assert np.abs(_denorm(x)[pad.numpy()]).max() < 1e-3, geometry


def test_gridmask_area_follows_ratio() -> None:
    torch.manual_seed(0)
    for ratio, mode in ((0.6, 1), (0.3, 1), (0.6, 0)):
        g = GridMask(d1=12, d2=28, ratio=ratio, mode=mode, prob=1.0)
        frac = np.mean([g.grid(128, 256).float().mean().item() for _ in range(40)])
        expected = (1 - ratio) ** 2 if mode == 1 else 1 - (1 - ratio) ** 2
        assert abs(frac - expected) < 0.05, (ratio, mode, frac)
    g = GridMask(d1=12, d2=28, rotate=90, prob=1.0)
    frac = np.mean([g.grid(128, 256).float().mean().item() for _ in range(40)])
    assert abs(frac - 0.16) < 0.05


def test_gridmask_masks_image_only() -> None:
    from torchvision import tv_tensors

    image, mask = _coded(64, 96)
    torch.manual_seed(3)
    base = build_train_transform((64, 96), gridmask=False, jitter=None)
    grid = build_train_transform((64, 96), gridmask=True, gridmask_prob=1.0, jitter=None)
    torch.manual_seed(3)
    x0, y0 = base(image, mask)
    torch.manual_seed(3)
    x1, y1 = grid(image, mask)
    assert torch.equal(y0, y1)  # labels untouched
    zeroed = (x1 == 0).all(0) & ~(x0 == 0).all(0)
    assert 0.05 < zeroed.float().mean() < 0.3  # about (1 - 0.6)**2 of the crop, mean colour
    g = GridMask(d1=8, d2=16, prob=1.0)
    img = tv_tensors.Image(torch.ones(3, 32, 32))
    lab = tv_tensors.Mask(torch.full((32, 32), 7))
    out_img, out_lab = g(img, lab)
    assert (out_lab == 7).all() and (out_img == 0).any()
    assert torch.equal(GridMask(prob=0.0)(img), img)


def test_gridmask_defaults_scale_with_crop() -> None:
    g = build_train_transform((1024, 1024)).gridmask
    assert g is not None and (g.d1, g.d2, g.ratio, g.mode, g.prob) == (96, 224, 0.6, 1, 0.8)
    g = build_train_transform((128, 256)).gridmask
    assert g is not None and (g.d1, g.d2) == (12, 28)
    assert build_train_transform((128, 256), gridmask_scale=0.5).gridmask.d1 == 48


def test_eval_transform_normalises() -> None:
    image, mask = _coded(32, 48)
    x, y = build_eval_transform()(image, mask)
    assert np.allclose(_denorm(x), image, atol=1e-3) and np.array_equal(y.numpy(), mask)
    x, y = build_eval_transform((16, 24))(image, mask)
    assert x.shape == (3, 16, 24) and y.shape == (16, 24)


def test_transform_rejects_bad_input() -> None:
    tf = build_train_transform((16, 16))
    with pytest.raises(EdgesegError, match="uint8"):
        tf(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8))
    with pytest.raises(EdgesegError, match="crop size"):
        build_train_transform((0, 16))


# ------------------------------------------------------------------------------ CLI


def _cli(*args: str):
    from typer.testing import CliRunner

    from edgeseg.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_synth_writes_layout(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    r = _cli(
        "data",
        "synth",
        "--out",
        str(out),
        "--train",
        "3",
        "--val",
        "2",
        "--height",
        "32",
        "--width",
        "64",
        "--seed",
        "4",
        "--json",
    )
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["splits"] == {"train": 3, "val": 2} and (s["height"], s["width"]) == (32, 64)
    assert len(CityscapesDataset(out, "train")) == 3 and len(CityscapesDataset(out, "val")) == 2
    r = _cli("data", "synth", "--out", str(out), "--train", "1", "--val", "0")
    assert r.exit_code == 2
    assert r.stderr.strip() == (
        f"error: output directory is not empty: {out} (use --overwrite to replace it)"
    )
    r = _cli(
        "data",
        "synth",
        "--out",
        str(out),
        "--train",
        "1",
        "--val",
        "1",
        "--height",
        "16",
        "--width",
        "32",
        "--overwrite",
    )
    assert r.exit_code == 0 and "pixels per train class" in r.stderr
    assert len(CityscapesDataset(out, "trainval")) == 2
