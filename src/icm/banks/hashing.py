"""The hashes of an image: PDQ (Meta's perceptual hash, through pdqhash as python-threatexchange
computes it) per judged frame, and the exact md5/sha256 of its bytes.

PDQ is computed from the frames already decoded for judging (:class:`~icm.media.DecodedImage`),
never from a second decode. A hash is 64 lowercase hex digits, the bits in the order
python-threatexchange and HMA write them, so hashes from either side compare.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from icm.banks.model import BankConfig, BankEntry, BankError, SignalType
from icm.media import DecodedImage, MediaError, MediaLimits, load_image
from icm.results import Hashes

#: Frames with a longer side than this are box-reduced by a whole factor before hashing. PDQ
#: filters the whole frame down to 64x64 anyway; hashing a 1600-pixel frame costs several times a
#: 1024-pixel one, for a hash a few bits away (see benchmarks/README.md).
PDQ_MAX_SIDE = 1024


def _bits_to_hex(bits: Any) -> str:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def _hashable(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    factor = -(-max(height, width) // PDQ_MAX_SIDE)  # ceiling: the result is at most PDQ_MAX_SIDE
    if factor > 1:
        frame = np.asarray(Image.fromarray(frame).reduce(factor))
    return np.ascontiguousarray(frame)


def pdq_frame(frame: np.ndarray, dihedral: bool = False) -> tuple[str, int, list[str]]:
    """The PDQ of one RGB uint8 frame (H x W x 3), its quality (0-100), and with ``dihedral`` the
    hashes of its eight dihedral copies, the frame itself first (one pass: no dearer than one)."""
    import pdqhash

    pixels = _hashable(frame)
    if not dihedral:
        bits, quality = pdqhash.compute(pixels)
        return _bits_to_hex(bits), int(quality), []
    all_bits, quality = pdqhash.compute_dihedral(pixels)
    hashes = [_bits_to_hex(bits) for bits in all_bits]
    return hashes[0], int(quality), hashes


def hash_image(image: DecodedImage, dihedral: bool = False) -> Hashes:
    """The hashes of a decoded image: one PDQ per judged frame, and its md5. Kept on the image
    (``image.hashes``): a second call hashes again only to add the dihedral copies."""
    if image.hashes is not None and (image.hashes.dihedral or not dihedral):
        return image.hashes
    per_frame = [pdq_frame(frame, dihedral) for frame in image.frames]
    image.hashes = Hashes(pdq=[p for p, _, _ in per_frame], quality=[q for _, q, _ in per_frame],
                          md5=image.md5, dihedral=[d for _, _, d in per_frame] if dihedral else [])
    return image.hashes


def hash_file(path: str | Path, limits: MediaLimits = MediaLimits()) -> dict[str, Any]:
    """What ``icm hash`` prints for one file: path, sha256, md5, pdq and quality (one entry per
    judged frame). Raises :class:`~icm.media.MediaError` when the file is not an image."""
    image = load_image(path, limits=limits)
    hashes = hash_image(image)
    return {"path": str(path), "sha256": image.sha256, "md5": hashes.md5,
            "pdq": hashes.pdq, "quality": hashes.quality}


def pdq_distance(a: str, b: str) -> int:
    """The Hamming distance of two PDQ hashes (0-256)."""
    return int.bit_count(int(a, 16) ^ int(b, 16))


def entries_from_file(
    config: BankConfig,
    path: str | Path,
    *,
    content_id: str | None = None,
    labels: list[str] | None = None,
    added_by: str | None = None,
    limits: MediaLimits = MediaLimits(),
) -> list[BankEntry]:
    """The bank entries of one image file: its PDQ per judged frame (a pdq bank) or its digest;
    the content id defaults to the file's sha256. BankError when the file is not an image, or
    when no frame's PDQ reaches the bank's quality floor (such a hash would never match)."""
    try:
        image = load_image(path, limits=limits)
    except MediaError as exc:
        raise BankError(f"{path}: {exc.message}") from exc
    ident = content_id or image.sha256
    common: dict[str, Any] = {"content_id": ident, "labels": labels or [], "added_by": added_by,
                              "source": str(path)}
    if config.signal is SignalType.md5:
        return [BankEntry(hash=image.md5 or "", **common)]
    if config.signal is SignalType.sha256:
        return [BankEntry(hash=image.sha256, **common)]
    hashes = hash_image(image)
    entries = [BankEntry(hash=pdq, quality=quality, **common)
               for pdq, quality in dict(zip(hashes.pdq, hashes.quality, strict=True)).items()
               if quality >= config.quality_floor]
    if not entries:
        raise BankError(f"{path}: PDQ quality {max(hashes.quality)} is below bank {config.name}'s "
                        f"floor {config.quality_floor} (a flat or blank image): it would never match")
    return entries
