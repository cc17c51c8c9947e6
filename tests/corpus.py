"""A corpus of broken and awkward image files, written into a folder by the tests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from helpers import render_text, sample_image
from PIL import Image


def _png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def write_broken(folder: Path) -> dict[str, str]:
    """Broken files named like images; returns file name -> expected error code."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = io.BytesIO()
    sample_image("astronaut").save(jpeg, "JPEG", quality=90)
    png = io.BytesIO()
    sample_image("coffee").save(png, "PNG")
    files = {
        "empty.jpg": (b"", "empty_file"),
        "truncated.jpg": (jpeg.getvalue()[: len(jpeg.getvalue()) // 3], "truncated"),
        "truncated.png": (png.getvalue()[: len(png.getvalue()) // 2], "truncated"),
        "text-named.jpg": (b"this is a shopping list, not a photo\n" * 20, "not_an_image"),
        "html-named.png": (b"<!doctype html><html><body>404</body></html>", "not_an_image"),
        "random-bytes.webp": (np.random.default_rng(0).bytes(5000), "not_an_image"),
        "bomb.png": (_png_header_claiming(100_000, 100_000), "too_large"),
        "one-pixel.png": (_encode(Image.new("RGB", (1, 1), "red"), "PNG"), "too_small"),
        "sliver.png": (_encode(Image.new("RGB", (4000, 3), "blue"), "PNG"), "too_small"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: code for name, (_, code) in files.items()}


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def write_awkward(folder: Path) -> dict[str, str]:
    """Valid but awkward images; returns file name -> what is special about it."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = sample_image("astronaut").resize((256, 256))
    photo.convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    sixteen = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(sixteen).save(folder / "sixteen-bit.png")
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.info["transparency"] = 0
    palette.save(folder / "palette-alpha.png", transparency=0)
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    # EXIF orientation 6: stored landscape, displayed rotated 90 degrees clockwise (portrait).
    wide = Image.new("RGB", (300, 100), "white")
    exif = Image.Exif()
    exif[0x0112] = 6
    wide.save(folder / "exif-rotated.jpg", exif=exif.tobytes())
    # Animations where only a late frame carries the text that matters.
    frames = [Image.new("RGB", (480, 160), (200, 220 - 20 * i, 240)) for i in range(5)]
    frames[3] = render_text("call +1 555-123-4567", size=(480, 160))
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(folder / "animated.webp", save_all=True, append_images=frames[1:], duration=100)
    (folder / "png-named.jpg").write_bytes(_encode(photo, "PNG"))
    return {
        "cmyk.jpg": "CMYK",
        "sixteen-bit.png": "16-bit greyscale",
        "palette-alpha.png": "palette with transparency",
        "rgba.png": "half-transparent RGBA",
        "exif-rotated.jpg": "EXIF orientation 6",
        "animated.gif": "5 frames, text in frame 3",
        "animated.webp": "5 frames, text in frame 3",
        "png-named.jpg": "a PNG named .jpg",
    }


def many_frames_on_a_huge_canvas(frames: int = 1000, side: int = 4000) -> bytes:
    """A GIF of ``frames`` one-pixel frames on a ``side`` x ``side`` canvas (about 23 bytes a frame):
    small on the wire, and every frame composited over the whole canvas when it is decoded."""
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff")
    for i in range(frames):
        out += b"\x21\xf9\x04\x00" + struct.pack("<H", 2) + b"\x00\x00"  # 20 ms per frame
        out += b"\x2c" + struct.pack("<HHHHB", (i * 37) % side, (i * 91) % side, 1, 1, 0)
        out += bytes([2, 2, 0x44, 0x01, 0])  # LZW: clear, colour 0, end
    return bytes(out + b"\x3b")
