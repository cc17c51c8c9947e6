"""Safe image loading: size limits, EXIF orientation, colour modes and animated frames.

Every failure becomes a :class:`MediaError` with an :class:`~icm.results.ErrorCode`, so that the
Moderator can write an error record for the item and carry on with the batch.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from icm.errors import InputError
from icm.results import ErrorCode, FileStamp, Hashes

# Raster formats only: Pillow can also hand some vector formats to external programs.
_RASTER = ("JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "ICO", "PPM", "TGA", "AVIF")
Image.init()
SAFE_FORMATS = tuple(f for f in _RASTER if f in Image.OPEN)
#: The file suffixes of each format Pillow decodes, the usual one first (what a file of that
#: format is named when icm writes one).
FORMAT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "MPO": (".jpg", ".jpeg", ".mpo"),
    "PNG": (".png", ".apng"),
    "GIF": (".gif",),
    "WEBP": (".webp",),
    "BMP": (".bmp", ".dib"),
    "TIFF": (".tif", ".tiff"),
    "ICO": (".ico",),
    "PPM": (".ppm", ".pgm", ".pbm", ".pnm"),
    "TGA": (".tga",),
    "AVIF": (".avif",),
}
#: the suffixes of image files: what a folder walk picks up
IMAGE_SUFFIXES: frozenset[str] = frozenset().union(*FORMAT_SUFFIXES.values())


def format_suffix(fmt: str) -> str:
    """The usual file suffix of a decoded format (``.img`` for one Pillow names but icm does not)."""
    return FORMAT_SUFFIXES.get(fmt.upper(), (".img",))[0]


def format_media_type(fmt: str) -> str:
    """The MIME type to serve a decoded format as. An MPO (what many cameras write) is a JPEG
    with more frames after the first, and browsers show it as one."""
    fmt = "JPEG" if fmt.upper() == "MPO" else fmt.upper()
    return Image.MIME.get(fmt, "application/octet-stream")  # filled by Image.init() above


class MediaError(InputError):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


#: Formats whose frames are drawn over the ones before: reaching frame k decodes frames 0..k.
_COMPOSITED = frozenset({"GIF", "PNG", "WEBP"})


@dataclass(frozen=True)
class MediaLimits:
    max_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 80_000_000
    min_side: int = 16
    max_frames: int = 8
    #: Pixels decoding may cost: the frames decoded times their size. A small animation on a huge
    #: canvas costs its whole canvas for every frame decoded (about a second on a core at this bound).
    max_decoded_pixels: int = 400_000_000
    #: Frames are downscaled to this longest side; every detector works at a lower resolution.
    max_side: int = 1600


@dataclass
class DecodedImage:
    """One image, decoded once and shared by every detector and every rule."""

    source: str
    sha256: str
    format: str
    width: int
    height: int
    n_frames: int
    frames: list[np.ndarray]  # RGB uint8, H x W x 3, already oriented and scaled
    frame_indices: list[int]
    warnings: list[str] = field(default_factory=list)
    decode_ms: float = 0.0
    hash_ms: float = 0.0
    #: milliseconds matching its hashes against known-content banks (None: no banks were given)
    match_ms: float | None = None
    md5: str | None = None
    #: the recorded hashes (PDQ per frame, md5), once computed for this image
    hashes: Hashes | None = None

    @property
    def animated(self) -> bool:
        return self.n_frames > 1

    def describe(self) -> dict[str, object]:
        info: dict[str, object] = {
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "frames": self.n_frames,
            "frames_judged": self.frame_indices,
        }
        if self.warnings:
            info["warnings"] = self.warnings
        return info


def file_stamp(path: str | Path) -> FileStamp | None:
    """Size and modification time of a file; None when it cannot be looked at (missing ...)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return FileStamp(size=info.st_size, mtime_ns=info.st_mtime_ns)


def read_bytes(path: str | Path, limits: MediaLimits = MediaLimits()) -> bytes:
    p = Path(path)
    try:
        size = p.stat().st_size
        if p.is_dir():
            raise MediaError(ErrorCode.unreadable, f"{p} is a directory, not an image file")
        if size > limits.max_bytes:
            raise MediaError(
                ErrorCode.too_large, f"file is {size:,} bytes; the limit is {limits.max_bytes:,}"
            )
        return p.read_bytes()
    except FileNotFoundError as exc:
        raise MediaError(ErrorCode.not_found, f"no such file: {p}") from exc
    except OSError as exc:
        raise MediaError(ErrorCode.unreadable, f"cannot read {p}: {exc.strerror or exc}") from exc


def load_image(
    source: str | Path, data: bytes | None = None, limits: MediaLimits = MediaLimits(), sha256: str | None = None
) -> DecodedImage:
    """Decode an image file (or its bytes) into oriented RGB frames, or raise MediaError.
    ``sha256``: the digest of ``data`` when the caller already has it (it is not computed again)."""
    started = time.perf_counter()
    name = str(source)
    if data is None:
        data = read_bytes(source, limits)
    if not data:
        raise MediaError(ErrorCode.empty_file, "the file is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise MediaError(ErrorCode.too_large, f"{len(data):,} bytes; limit {limits.max_bytes:,}")
    digest = sha256 or hashlib.sha256(data).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=SAFE_FORMATS)
        except UnidentifiedImageError as exc:
            raise MediaError(ErrorCode.not_an_image, _not_an_image_message(data)) from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise MediaError(ErrorCode.too_large, f"decompression bomb refused: {exc}") from exc
        except (OSError, ValueError, SyntaxError) as exc:
            raise MediaError(ErrorCode.not_an_image, f"cannot identify image: {exc}") from exc
        width, height = image.size
        if width * height > limits.max_pixels:
            raise MediaError(
                ErrorCode.too_large,
                f"{width}x{height} = {width * height:,} pixels; the limit is {limits.max_pixels:,}",
            )
        if min(width, height) < limits.min_side:
            raise MediaError(
                ErrorCode.too_small,
                f"{width}x{height} pixels is too small to judge (minimum side {limits.min_side})",
            )
        fmt = image.format or "UNKNOWN"
        try:
            n_frames = int(getattr(image, "n_frames", 1) or 1)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:  # counting reads every frame's header
            raise MediaError(ErrorCode.truncated if _looks_truncated(str(exc)) else ErrorCode.not_an_image,
                             f"cannot read the frames of the {fmt} image: {exc}") from exc
        indices = _sample_frames(n_frames, limits.max_frames)
        _check_decoding_cost(fmt, width, height, n_frames, indices, limits)
        frames = []
        try:
            for index in indices:
                if n_frames > 1:
                    image.seek(index)
                    if image.size[0] * image.size[1] > limits.max_pixels:  # a later page may be larger
                        raise MediaError(
                            ErrorCode.too_large,
                            f"frame {index} is {image.size[0]}x{image.size[1]} pixels; the limit is "
                            f"{limits.max_pixels:,}",
                        )
                frames.append(_to_rgb_array(image, limits.max_side))
        except MediaError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise MediaError(ErrorCode.too_large, f"decompression bomb refused: {exc}") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            message = str(exc)
            code = ErrorCode.truncated if _looks_truncated(message) else ErrorCode.not_an_image
            raise MediaError(code, f"cannot decode {fmt} image: {message}") from exc
    decoded = DecodedImage(
        source=name,
        sha256=digest,
        format=fmt,
        width=width,
        height=height,
        n_frames=n_frames,
        frames=frames,
        frame_indices=indices,
        md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
    )
    decoded.warnings += name_warnings(name, fmt)
    decoded.decode_ms = round((time.perf_counter() - started) * 1000, 2)
    return decoded


def name_warnings(name: str, fmt: str) -> list[str]:
    """What the name of an image says wrongly about its content (a suffix of another format)."""
    suffix = Path(name).suffix.lower()
    if suffix and suffix not in FORMAT_SUFFIXES.get(fmt, (suffix,)):
        return [f"file name says {suffix} but the content is {fmt}"]
    return []


def _check_decoding_cost(
    fmt: str, width: int, height: int, n_frames: int, indices: list[int], limits: MediaLimits
) -> None:
    """Refuse, before decoding anything, an image whose judged frames cost more pixels to decode
    than the limit: in a composited format every frame up to the last judged one is decoded."""
    decoded = indices[-1] + 1 if fmt in _COMPOSITED else len(indices)
    cost = decoded * width * height
    if cost > limits.max_decoded_pixels:
        raise MediaError(
            ErrorCode.too_large,
            f"{n_frames} frames of {width}x{height}: judging {len(indices)} of them means decoding "
            f"{decoded} frames, {cost:,} pixels; the limit is {limits.max_decoded_pixels:,}",
        )


def _sample_frames(n_frames: int, max_frames: int) -> list[int]:
    if n_frames <= max_frames:
        return list(range(n_frames))
    return sorted({round(i * (n_frames - 1) / max(max_frames - 1, 1)) for i in range(max_frames)})


def _to_rgb_array(image: Image.Image, max_side: int) -> np.ndarray:
    if image.format == "JPEG" and max(image.size) > 2 * max_side:
        image.draft("RGB", (max_side, max_side))  # decode at reduced scale: much faster
    frame = ImageOps.exif_transpose(image) if not getattr(image, "is_animated", False) else image
    frame.load()
    frame = _to_rgb(frame)
    if max(frame.size) > max_side:
        frame.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return np.asarray(frame, dtype=np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 or mode.startswith("I;16") else 255.0
        if mode == "F":
            low, high = float(arr.min(initial=0)), float(arr.max(initial=1))
            arr, top = arr - low, max(high - low, 1e-9)
        grey = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        # Transparent areas are shown on white, as a browser on a light page would.
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _looks_truncated(message: str) -> bool:
    lowered = message.lower()
    return any(w in lowered for w in ("truncated", "premature end", "broken data", "end of file"))


def _not_an_image_message(data: bytes) -> str:
    head = data[:16]
    if head.lstrip().startswith((b"<", b"{", b"[")) or all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "the file holds text, not an image"
    return "the content is not an image format that can be decoded"


def pick_frames(image: DecodedImage, max_frames: int) -> list[np.ndarray]:
    """Up to ``max_frames`` frames of an animated image, evenly spaced (the first always)."""
    return [image.frames[i] for i in _sample_frames(len(image.frames), max_frames)]


def data_url(frame: np.ndarray, max_side: int, max_bytes: int) -> str:
    """A JPEG data URL of the frame, no longer than ``max_side`` and no larger than ``max_bytes``.

    Oversized frames are scaled down by a quarter at a time until they fit; ValueError when even
    64 pixels do not.
    """
    image = Image.fromarray(frame)
    side = min(max_side, max(image.size))
    while True:
        scaled = image.copy()
        scaled.thumbnail((side, side), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        scaled.save(buffer, format="JPEG", quality=90)
        encoded = base64.b64encode(buffer.getvalue())
        url_size = len(encoded) + len("data:image/jpeg;base64,")
        if url_size <= max_bytes:
            return "data:image/jpeg;base64," + encoded.decode("ascii")
        if side <= 64:
            raise ValueError(f"the image does not fit in {max_bytes:,} bytes even at {side}px")
        side = max(64, side * 3 // 4)
