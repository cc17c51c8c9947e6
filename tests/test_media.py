"""Safe image loading: every broken file becomes a coded error; awkward files decode correctly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from corpus import many_frames_on_a_huge_canvas, write_awkward, write_broken

from icm.media import MediaError, MediaLimits, load_image


def test_each_broken_file_gives_its_error_code(tmp_path: Path) -> None:
    expected = write_broken(tmp_path)
    for name, code in expected.items():
        with pytest.raises(MediaError) as info:
            load_image(tmp_path / name)
        assert info.value.code == code, (name, info.value.message)
        assert info.value.message


def test_missing_directory_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as info:
        load_image(tmp_path / "absent.jpg")
    assert info.value.code == "not_found"
    with pytest.raises(MediaError) as info:
        load_image(tmp_path)
    assert info.value.code == "unreadable"
    (tmp_path / "big.jpg").write_bytes(b"\xff" * 2048)
    with pytest.raises(MediaError) as info:
        load_image(tmp_path / "big.jpg", limits=MediaLimits(max_bytes=1024))
    assert info.value.code == "too_large"


@pytest.fixture(scope="module")
def awkward(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("awkward")
    write_awkward(folder)
    return folder


def test_cmyk_decodes_to_rgb_close_to_the_original(awkward: Path) -> None:
    image = load_image(awkward / "cmyk.jpg")
    frame = image.frames[0]
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8
    assert image.format == "JPEG"
    assert 60 < frame.mean() < 200  # not inverted to a negative, not blank


def test_sixteen_bit_is_scaled_not_clipped(awkward: Path) -> None:
    frame = load_image(awkward / "sixteen-bit.png").frames[0]
    # Values were grey * 257; scaled back they spread over 0..255 rather than saturating at 255.
    assert frame.max() <= 255 and 30 < frame.mean() < 220
    assert (frame == 255).mean() < 0.5


def test_palette_with_transparency_and_rgba_are_composited_on_white(awkward: Path) -> None:
    rgba = load_image(awkward / "rgba.png").frames[0]
    assert rgba.shape[2] == 3 and rgba.mean() > 128  # half-transparent over white: lighter
    palette = load_image(awkward / "palette-alpha.png").frames[0]
    assert palette.shape == (256, 256, 3)


def test_exif_rotation_is_applied(awkward: Path) -> None:
    image = load_image(awkward / "exif-rotated.jpg")
    assert image.frames[0].shape[:2] == (300, 100)  # portrait once rotated


@pytest.mark.parametrize("name", ["animated.gif", "animated.webp"])
def test_animations_keep_every_frame_up_to_the_limit(awkward: Path, name: str) -> None:
    image = load_image(awkward / name)
    assert image.n_frames == 5 and image.frame_indices == [0, 1, 2, 3, 4]
    # Frame 3 is the text frame: the only one with near-black pixels.
    assert [bool((f < 40).any()) for f in image.frames] == [False, False, False, True, False]
    sampled = load_image(awkward / name, limits=MediaLimits(max_frames=3))
    assert sampled.frame_indices == [0, 2, 4]


def test_an_animation_that_costs_too_much_to_decode_is_refused_before_decoding() -> None:
    import time

    data = many_frames_on_a_huge_canvas(frames=1000, side=4000)  # 23 kB; ~16 G pixels to composite
    assert len(data) < 30_000
    started = time.perf_counter()
    with pytest.raises(MediaError) as info:
        load_image("bomb.gif", data=data)
    assert time.perf_counter() - started < 5  # refused before the first frame, not after a minute
    assert info.value.code == "too_large"
    assert "1000 frames of 4000x4000" in info.value.message and "400,000,000" in info.value.message
    # the cost counts the frames decoded: the first frame alone is cheap, and is judged
    first = load_image("bomb.gif", data=data, limits=MediaLimits(max_frames=1))
    assert first.n_frames == 1000 and first.frame_indices == [0]
    # a composited format decodes every frame up to the last judged one
    small = many_frames_on_a_huge_canvas(frames=20, side=100)
    with pytest.raises(MediaError) as info:
        load_image("small.gif", data=small, limits=MediaLimits(max_frames=2, max_decoded_pixels=19 * 100 * 100))
    assert info.value.code == "too_large" and "decoding 20 frames" in info.value.message
    assert load_image("small.gif", data=small, limits=MediaLimits(max_frames=2)).frame_indices == [0, 19]


def test_mislabelled_but_valid_file_is_decoded_with_a_warning(awkward: Path) -> None:
    image = load_image(awkward / "png-named.jpg")
    assert image.format == "PNG"
    assert image.warnings == ["file name says .jpg but the content is PNG"]


def test_large_images_are_downscaled_and_hashed(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (4000, 1000), "green").save(tmp_path / "wide.png")
    image = load_image(tmp_path / "wide.png", limits=MediaLimits(max_side=1000))
    assert (image.width, image.height) == (4000, 1000)
    assert image.frames[0].shape == (250, 1000, 3)
    assert len(image.sha256) == 64


def test_a_decoded_format_has_its_usual_suffix_and_media_type() -> None:
    from icm.media import format_media_type, format_suffix

    assert [format_suffix(f) for f in ["JPEG", "MPO", "png", "TIFF", "PPM", "XBM"]] == [
        ".jpg", ".jpg", ".png", ".tif", ".ppm", ".img"]
    assert [format_media_type(f) for f in ["MPO", "JPEG", "BMP", "WEBP", ""]] == [
        "image/jpeg", "image/jpeg", "image/bmp", "image/webp", "application/octet-stream"]
