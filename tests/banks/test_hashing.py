"""Hashes of every image: PDQ from the decoded frames (as python-threatexchange computes it), md5,
recorded in the result under schema 1.2; ``icm hash``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import sample_image
from PIL import Image
from typer.testing import CliRunner

from icm import Moderator
from icm.banks.hashing import hash_file, hash_image, pdq_distance
from icm.cli.app import app
from icm.media import load_image
from icm.policy.load import parse_policy
from icm.results import SCHEMA_VERSION, ModerationResult

POLICY = parse_policy("""
id: hashing
version: 1
rules:
  - id: phone
    text: No phone numbers.
    action: block
    criteria:
      - {id: phone, description: A phone number is visible., signals: ["text:phone"]}
""")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_pdq_is_python_threatexchange_pdq_of_the_same_pixels() -> None:
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes
    from threatexchange.signal_type.pdq.signal import PdqSignal

    for name in ("astronaut", "coffee", "chelsea"):
        data = _png(sample_image(name))
        hashes = hash_image(load_image(f"{name}.png", data=data))
        theirs, quality = pdq_from_bytes(data)
        assert hashes.pdq == [PdqSignal.validate_signal_str(theirs)]
        assert hashes.quality == [quality]


def test_large_frames_hash_close_to_their_full_size() -> None:
    """A frame over PDQ_MAX_SIDE is reduced before hashing: its hash stays a near copy's."""
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes

    big = sample_image("astronaut").resize((1500, 1500), Image.Resampling.BICUBIC)
    data = _png(big)
    ours = hash_image(load_image("big.png", data=data)).pdq[0]
    assert pdq_distance(ours, pdq_from_bytes(data)[0]) <= 16


def test_animated_images_get_one_pdq_per_judged_frame(tmp_path: Path) -> None:
    frames = [sample_image(n).resize((200, 150)) for n in ("astronaut", "coffee", "chelsea")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100)
    line = hash_file(tmp_path / "a.gif")
    assert len(line["pdq"]) == len(line["quality"]) == 3
    assert len(set(line["pdq"])) == 3 and pdq_distance(line["pdq"][0], line["pdq"][1]) > 31


def test_the_result_records_the_hashes_under_schema_1_2(tmp_path: Path) -> None:
    sample_image("coffee").save(tmp_path / "coffee.png")
    result = Moderator(POLICY).moderate(tmp_path / "coffee.png")
    assert SCHEMA_VERSION == result.schema_version == "1.2"
    expected = hash_file(tmp_path / "coffee.png")
    assert result.hashes is not None
    assert result.hashes.pdq == expected["pdq"] and result.hashes.md5 == expected["md5"]
    assert result.timing_ms["hash"] >= 0.0
    line = json.loads(result.to_json())
    assert set(line["hashes"]) == {"pdq", "quality", "md5"}  # the dihedral copies are not recorded
    old = {k: v for k, v in line.items() if k != "hashes"} | {"schema_version": "1.1"}
    assert ModerationResult.model_validate(old).hashes is None


def test_icm_hash_prints_one_line_per_file_and_fails_for_a_non_image(tmp_path: Path) -> None:
    sample_image("chelsea").save(tmp_path / "cat.jpg", quality=90)
    (tmp_path / "notes.jpg").write_text("not an image")
    result = CliRunner().invoke(app, ["hash", str(tmp_path / "cat.jpg"), str(tmp_path / "notes.jpg")])
    assert result.exit_code == 1, result.output
    good, bad = (json.loads(line) for line in result.stdout.splitlines())
    assert set(good) == {"path", "sha256", "md5", "pdq", "quality"}
    import hashlib

    raw = (tmp_path / "cat.jpg").read_bytes()
    assert good["sha256"] == hashlib.sha256(raw).hexdigest() and good["md5"] == hashlib.md5(raw).hexdigest()
    assert len(good["pdq"][0]) == 64 and good["quality"][0] >= 50
    assert bad == {"path": str(tmp_path / "notes.jpg"),
                   "error": {"code": "not_an_image", "message": "the file holds text, not an image"}}


def test_flat_images_have_low_quality() -> None:
    flat = Image.fromarray(np.full((100, 100, 3), 128, dtype=np.uint8))
    assert hash_image(load_image("flat.png", data=_png(flat))).quality[0] < 50
@pytest.mark.parametrize("name", ["threshold", "quality"])
def test_defaults_are_python_threatexchange_s(name: str) -> None:
    from threatexchange.signal_type.pdq.pdq_utils import PDQ_CONFIDENT_MATCH_THRESHOLD
    from threatexchange.signal_type.pdq.signal import PdqSignal

    from icm.banks import model

    if name == "threshold":
        assert model.PDQ_DISTANCE == PDQ_CONFIDENT_MATCH_THRESHOLD
    else:
        assert model.QUALITY_FLOOR == PdqSignal.QUALITY_THRESHOLD
