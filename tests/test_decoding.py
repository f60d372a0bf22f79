"""Image decoding keeps the information: high bit depths scaled (never clipped), every Pillow format, EXIF."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featdistill.tasks.classification.data import load_tensors
from featdistill.tasks.decode import BadImageError, decode_image
from featdistill.tasks.ingest import HIDDEN, UNDECODABLE_SKIPPED, UNSUPPORTED, SplitStats

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)


def _hwc(pixels: torch.Tensor) -> np.ndarray:
    return pixels.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_levels_are_scaled_not_clipped(tmp_path: Path, suffix: str) -> None:
    levels = np.arange(0, 65536, 4369, dtype=np.uint16).reshape(4, 4)  # 0, 4369, ..., 65535
    path = tmp_path / f"gray16{suffix}"
    Image.fromarray(levels).save(path)
    eight = decode_image(path, bits=8)
    assert eight.mode.startswith("I;16") and eight.pixels.dtype == torch.uint8
    expected = np.rint(levels.astype(float) * 255 / 65535).astype(
        np.uint8
    )  # 0, 17, 34, ..., 255: 16 distinct levels
    for channel in range(3):
        assert np.array_equal(eight.pixels[channel].numpy(), expected)
    sixteen = decode_image(path, bits=16)
    assert sixteen.pixels.dtype == torch.uint16 and np.array_equal(sixteen.pixels[0].numpy(), levels)


def test_32_bit_integer_and_float_images(tmp_path: Path) -> None:
    ints = np.array([[0, 1000, 40000, 65535]], dtype=np.int32)
    Image.fromarray(ints, mode="I").save(tmp_path / "ints.tif")
    assert decode_image(tmp_path / "ints.tif", bits=16).pixels[0].tolist() == [[0, 1000, 40000, 65535]]
    floats = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    Image.fromarray(floats, mode="F").save(tmp_path / "floats.tif")
    assert decode_image(tmp_path / "floats.tif").pixels[0].tolist() == [[0, 64, 255]]
    Image.fromarray(floats * 4000, mode="F").save(tmp_path / "big.tif")
    with pytest.raises(BadImageError, match=r"big\.tif: float image with values in \[0.0, 4000.0\]"):
        decode_image(tmp_path / "big.tif")
    Image.fromarray(ints * 70000, mode="I").save(tmp_path / "wide.tif")
    with pytest.raises(BadImageError, match=r"outside 0\.\.65535"):
        decode_image(tmp_path / "wide.tif")


def test_classes_differing_above_8_bits_stay_apart(tmp_path: Path) -> None:
    """Constant 16-bit images whose levels are all above 255: clipping made them one all-white class."""
    for c, level in enumerate((1000, 1100, 30000)):
        (tmp_path / "train" / f"c{c}").mkdir(parents=True)
        Image.fromarray(np.full((4, 4), level, np.uint16)).save(tmp_path / "train" / f"c{c}" / "a.png")
    eight, _, _ = load_tensors("imagefolder", tmp_path, "train")
    assert eight[:, 0, 0, 0].tolist() == [4, 4, 117]  # 1000 and 1100 share an 8-bit level ...
    sixteen, _, _ = load_tensors("imagefolder", tmp_path, "train", bits=16)
    assert sixteen.dtype == torch.uint16 and sixteen[:, 0, 0, 0].tolist() == [1000, 1100, 30000]  # ... not 16


def test_gif_reads_the_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (5, 4), colour) for colour in ((200, 10, 10), (10, 200, 10))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    decoded = decode_image(tmp_path / "anim.gif")
    assert decoded.pixels.shape == (3, 4, 5) and decoded.mode == "P"
    assert _hwc(decoded.pixels)[0, 0].tolist() == [200, 10, 10]


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path: Path) -> None:
    smooth = np.tile(np.linspace(40, 220, 10, dtype=np.uint8)[None, :, None], (6, 1, 3))
    smooth[..., 0] = 255 - smooth[..., 0]
    Image.fromarray(smooth).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    decoded = decode_image(tmp_path / "cmyk.jpg")
    assert decoded.mode == "CMYK" and decoded.pixels.shape == (3, 6, 10)
    assert np.abs(_hwc(decoded.pixels).astype(int) - smooth).max() <= 8  # JPEG error, not inverted colours


def test_rgba_palette_and_webp(tmp_path: Path) -> None:
    Image.fromarray(np.dstack([RGB, np.full((6, 10), 7, np.uint8)])).save(tmp_path / "rgba.png")
    rgba = decode_image(tmp_path / "rgba.png")
    assert rgba.alpha and rgba.mode == "RGBA" and np.array_equal(_hwc(rgba.pixels), RGB)
    palette = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(tmp_path / "palette.png")
    decoded = decode_image(tmp_path / "palette.png")
    assert decoded.mode == "P" and not decoded.alpha
    assert np.array_equal(_hwc(decoded.pixels), np.asarray(palette.convert("RGB")))
    Image.fromarray(RGB).save(tmp_path / "lossless.webp", lossless=True)
    assert np.array_equal(_hwc(decode_image(tmp_path / "lossless.webp").pixels), RGB)
    Image.fromarray(RGB[..., 0]).save(tmp_path / "gray.png")
    gray = decode_image(tmp_path / "gray.png")
    assert gray.mode == "L" and all(np.array_equal(c.numpy(), RGB[..., 0]) for c in gray.pixels)


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_exif_orientation_is_applied(tmp_path: Path, suffix: str) -> None:
    """Orientation 6 (phone held upright): stored 40 wide and 20 high, shown 20 wide and 40 high."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = 255  # left half white: after a 90-degree clockwise turn, the top half
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / f"phone{suffix}", exif=exif)
    pixels = decode_image(tmp_path / f"phone{suffix}").pixels
    assert pixels.shape == (3, 40, 20)
    assert pixels[:, :18].float().mean() > 240 and pixels[:, 22:].float().mean() < 15


def test_skipped_files_are_counted_by_reason(tmp_path: Path) -> None:
    cat = tmp_path / "train" / "cat"
    cat.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(RGB).save(cat / f"{i}.png")
    Image.fromarray(RGB).save(cat / "3.gif")  # read (first frame), not skipped
    (cat / "notes.txt").write_text("x")
    (cat / "labels.csv").write_text("x")
    (cat / ".DS_Store").write_bytes(b"\0")
    (cat / "Thumbs.db").write_bytes(b"\0")
    (cat / "._0.png").write_bytes(b"\0")
    (cat / "bad.png").write_bytes(b"\x89PNG broken")
    stats = SplitStats("train", str(tmp_path / "train"))
    with pytest.warns(UserWarning, match="skipping undecodable image"):
        images, _, _ = load_tensors("imagefolder", tmp_path, "train", on_bad_file="skip", stats=stats)
    report = stats.to_dict()
    assert images.shape[0] == report["images"] == 4 and report["classes"] == {"cat": 4}
    assert {reason: entry["count"] for reason, entry in report["skipped"].items()} == {
        UNSUPPORTED: 2,
        HIDDEN: 3,
        UNDECODABLE_SKIPPED: 1,
    }
    assert report["skipped"][UNSUPPORTED]["first"] == [str(cat / "labels.csv"), str(cat / "notes.txt")]
    assert report["formats"] == {"RGB": 3, "P": 1} and report["sizes"] == {"10x6": 4}


def test_cached_split_keeps_its_report(tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    Image.fromarray(RGB).save(tmp_path / "train" / "a" / "0.png")
    Image.fromarray(np.dstack([RGB, RGB[..., 0]])).save(tmp_path / "train" / "a" / "1.png")
    (tmp_path / "train" / "a" / "x.txt").write_text("x")
    reports = []
    for _ in range(2):  # decoded, then read from the cache
        stats = SplitStats("train", str(tmp_path / "train"))
        with pytest.warns(UserWarning, match="alpha channel"):
            load_tensors("imagefolder", tmp_path, "train", cache_dir=tmp_path / "cache", stats=stats)
        reports.append(stats.to_dict())
    assert reports[0] == reports[1] and reports[0]["alpha_dropped"] == 1
    assert reports[0]["skipped"][UNSUPPORTED]["count"] == 1


def test_opaque_alpha_is_dropped_without_a_warning(tmp_path: Path) -> None:
    from featdistill.cli.main import main

    opaque = np.dstack([RGB, np.full((6, 10), 255, np.uint8)])
    partly = np.dstack([255 - RGB, np.full((6, 10), 255, np.uint8)])  # other colours: data not constant
    partly[0, 0, 3] = 254
    for name, pixels in (("opaque", opaque), ("partly", partly)):
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")  # torchvision's PNG decoder
        Image.fromarray(pixels).save(tmp_path / f"{name}.tiff")  # Pillow
    for suffix in ("png", "tiff"):
        opaque_file, partly_file = (decode_image(tmp_path / f"{n}.{suffix}") for n in ("opaque", "partly"))
        assert opaque_file.mode == partly_file.mode == "RGBA"
        assert not opaque_file.alpha and partly_file.alpha
        assert np.array_equal(_hwc(opaque_file.pixels), RGB)

    (tmp_path / "data" / "train" / "a").mkdir(parents=True)
    Image.fromarray(opaque).save(tmp_path / "data" / "train" / "a" / "0.png")
    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"data: {{name: imagefolder, root: {tmp_path / 'data'}, val_split: train}}\nmodel: {{student: resnet8}}\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a warning would end the command with an error
        assert main(["data", str(config)]) == 0
    Image.fromarray(partly).save(tmp_path / "data" / "train" / "a" / "1.png")
    with pytest.warns(UserWarning, match="1 images of split 'train'.*alpha channel"):
        assert main(["data", str(config)]) == 0
