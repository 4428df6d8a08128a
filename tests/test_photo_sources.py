"""Photograph sources (flowkernels.photo_sources) and the held-out evaluation (flowkernels.benchmarks.heldout).

The Debian wallpaper packages are not installed everywhere, so the file-finding logic is tested on a
fake file-system root of small JPEGs laid out as the packages lay them out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowkernels import photo_sources
from flowkernels.benchmarks import heldout


def test_area_downscale_is_the_rounded_block_mean_and_drops_the_border():
    image = np.arange(7 * 9, dtype=np.uint8).reshape(7, 9)
    small = photo_sources.area_downscale(image, 2)
    assert small.shape == (3, 4) and small.dtype == np.uint8
    block = image[2:4, 4:6].astype(int)
    assert small[1, 2] == (block.sum() + 2) // 4
    rgb = np.stack([image, 255 - image, image // 2], axis=-1)
    assert photo_sources.area_downscale(rgb, 3).shape == (2, 3, 3)
    assert photo_sources.area_downscale(rgb, 1) is rgb


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    from PIL import Image

    rng = np.random.default_rng(0)
    files = {
        "usr/share/backgrounds/mate/nature/Lake.jpg": (60, 80),
        "usr/share/backgrounds/mate/nature/Tree.jpg": (1300, 1400),
        "usr/share/wallpapers/Hills/contents/images/2560x1600.jpg": (40, 64),
        "usr/share/wallpapers/Hills/contents/images/1080x1920.jpg": (40, 64),  # not the photograph size
    }
    for relative, (height, width) in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    monkeypatch.setenv("FLOWKERNELS_DATA_ROOT", str(tmp_path))
    return photo_sources


def test_sources_are_found_by_their_packages_layout_and_split_by_role(fake_root):
    assert [p.name for p in fake_root.source_files("mate")] == ["Lake.jpg", "Tree.jpg"]
    plasma = fake_root.load_source("plasma")
    assert [(p.source, p.name, p.rgb.shape) for p in plasma] == [("plasma", "Hills", (20, 32, 3))]
    mate = {p.name: p.rgb.shape for p in fake_root.load_source("mate")}
    assert mate == {"Lake": (30, 40, 3), "Tree": (325, 350, 3)}  # by 2, and by 4 from 1200 pixels up
    heldout_sources = {p.source for p in fake_root.heldout_photographs()}
    assert "mate" not in heldout_sources and "plasma" in heldout_sources
    assert {p.source for p in fake_root.development_photographs()} == {"mate"}
    assert fake_root.missing_sources() == []


def test_development_patches_add_the_wallpapers_split_by_photograph_and_never_the_held_out_ones(fake_root, monkeypatch):
    from flowkernels import data

    pytest.importorskip("skimage")
    monkeypatch.setattr(data, "DEVELOPMENT_TEST_EVERY", 2)  # the fake root has two development wallpapers
    assert data.development_photo_names("train") == ["mate/Lake"]
    assert data.development_photo_names("test") == ["mate/Tree"]
    for split, wallpaper in (("train", "Lake"), ("test", "Tree")):
        for color in (False, True):
            patches = data.load_development_patches(split, color=color, patch_size=8, stride=8)
            scikit = data.load_photo_patches(split, color=color, patch_size=8, stride=8)
            photo = next(p for p in fake_root.load_source("mate") if p.name == wallpaper)
            image = photo.rgb.transpose(2, 0, 1) if color else photo.gray()[None]
            rows, cols = image.shape[1] // 8, image.shape[2] // 8
            assert patches.shape == (scikit.shape[0] + rows * cols, 3 if color else 1, 8, 8)
            assert torch.equal(patches[: scikit.shape[0]], scikit)  # scikit-image's photographs first
            assert torch.equal(patches[scikit.shape[0]], torch.from_numpy(image[:, :8, :8].astype(np.int64)))
    assert "photos-dev-gray" in data.DATASETS and "photos-dev-rgb" in data.DATASETS


def test_development_patches_without_the_wallpapers_say_how_to_install_them(tmp_path, monkeypatch):
    from flowkernels import data

    monkeypatch.setenv("FLOWKERNELS_DATA_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="apt-get install mate-backgrounds"):
        data.load_development_patches("train")


def test_a_missing_package_is_named_with_its_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWKERNELS_DATA_ROOT", str(tmp_path))
    missing = photo_sources.missing_sources()
    assert any("apt-get install plasma-workspace-wallpapers" in line for line in missing)
    assert photo_sources.load_source("mate") == []


def test_photograph_gray_is_the_luma():
    rgb = np.full((2, 3, 3), (255, 0, 0), np.uint8)
    photo = photo_sources.Photograph("x", "red", rgb)
    assert photo.label == "x/red" and (photo.gray() == 76).all() and photo.gray().dtype == np.uint8


def test_image_rows_are_checked_files_and_judge_decides_on_the_numbers():
    pytest.importorskip("imagecodecs")
    data = pytest.importorskip("skimage.data")
    photo = photo_sources.Photograph("skimage", "coffee", data.coffee()[:64, :96])
    from flowkernels.codec import LosslessImageCodec
    from flowkernels.models.idf import IDF

    torch.manual_seed(0)
    gray_flow = IDF(1, 8, 8, data_levels=256, num_scales=2, steps_per_scale=1, hidden=8, blocks=1).eval()
    rows = heldout.heldout_rows([photo], flows={"IDF tiny": {1: LosslessImageCodec(gray_flow)}})
    assert [r["label"] for r in rows] == ["skimage/coffee (gray)", "skimage/coffee (RGB)"]
    assert rows[0]["flows"]["IDF tiny"] > 0 and rows[1]["flows"] == {"IDF tiny": None}  # no RGB model
    for row in rows:
        assert row["method"] in ("context", "png", "stored")
        assert row["fkc"] == min(v for v in row["methods"].values() if v is not None) > 0
        assert set(row["classical"]) == {"PNG", "WebP lossless", "JPEG-XL lossless", "JPEG-LS"}
    # 128x128 noise: imagecodecs' JPEG-LS fails on it (its output buffer is too small), which the row records
    noise = heldout.image_row("noise", np.random.default_rng(0).integers(0, 256, (128, 128), dtype=np.uint8))
    assert noise["method"] == "stored" and noise["classical"]["PNG"] > 8
    assert "failed" in heldout.format_heldout_table([noise], means=False) or noise["classical"]["JPEG-LS"] > 8
    verdicts = heldout.judge(rows, [noise], {"encode_s": 0.1, "decode_s": 6.0})
    assert verdicts["768x512 gray: encode and decode under 5 s each"]["met"] is False
    worse = [dict(r, fkc=r["classical"]["PNG"] * 1.01) for r in rows]
    assert heldout.judge(worse, [noise], None)["below PNG on every held-out image"]["not below"] == [
        r["label"] for r in rows
    ]
    table = heldout.format_heldout_table(rows)
    assert "mean, 1 gray" in table and "mean, 1 RGB" in table and "| IDF tiny alone |" in table
    gray_mean = next(line for line in table.splitlines() if "mean, 1 gray" in line)
    assert f"| {rows[0]['flows']['IDF tiny']:.3f} |" in gray_mean
