"""The one output schema: RuleVerdict, Evidence and ModerationResult (one JSON object per image)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from icm.policy.schema import Action

#: 1.1 added ``error.file`` (optional): a 1.0 line reads as a 1.1 line without it.
#: 1.2 added ``hashes``, ``evidence.distance`` (a known-content match's hash distance) and
#: ``evidence.found_in`` (where a text signal's matched text was read), all optional: a 1.0 or 1.1
#: line reads as a 1.2 line without them.
SCHEMA_VERSION = "1.2"
#: the criterion of the evidence of a known-content bank's match (``signal`` is ``hash:BANK``)
KNOWN_CONTENT = "known-content"


class Verdict(StrEnum):
    violates = "violates"
    complies = "complies"
    uncertain = "uncertain"


class ErrorCode(StrEnum):
    """Why an image could not be judged."""

    not_found = "not_found"
    unreadable = "unreadable"
    empty_file = "empty_file"
    not_an_image = "not_an_image"
    truncated = "truncated"
    too_large = "too_large"
    too_small = "too_small"
    unsupported = "unsupported"
    backend_error = "backend_error"
    model_output = "model_output"
    timeout = "timeout"

    @property
    def permanent(self) -> bool:
        """The file itself cannot be judged (corrupt, not an image, too small, a bomb ...): trying
        the same bytes again fails the same way. The other codes (a missing or unreadable file, a
        backend failure, a timeout, an unreadable model answer) may pass on another try."""
        return self in _PERMANENT

    @property
    def model_failure(self) -> bool:
        """The backend or its model failed (an error, an unreadable answer, a timeout), not the
        image: a person may judge the image instead, so such a result can go to review."""
        return self in _MODEL_FAILURES


_MODEL_FAILURES = frozenset({ErrorCode.backend_error, ErrorCode.model_output, ErrorCode.timeout})

_PERMANENT = frozenset({
    ErrorCode.empty_file, ErrorCode.not_an_image, ErrorCode.truncated, ErrorCode.too_large,
    ErrorCode.too_small, ErrorCode.unsupported,
})


class Evidence(BaseModel):
    """One observation supporting (or bearing on) a verdict."""

    criterion: str
    signal: str | None = None
    score: float | None = None
    box: list[int] | None = Field(None, description="[x, y, width, height] in image pixels")
    frame: int | None = Field(None, description="frame index, for animated images")
    text: str | None = Field(None, description="matched text, for text signals; the content id, for a "
                             "known-content match")
    distance: int | None = Field(None, description="known-content matches: the hash distance (PDQ: 0-256 "
                                 "bits; 0 for an exact md5/sha256 match)")
    found_in: str | None = Field(
        None,
        description="for text signals: the signal whose text matched, text:any (OCR) or qr:any "
        "(a decoded QR code or barcode)",
    )


class RuleVerdict(BaseModel):
    rule_id: str
    verdict: Verdict
    probability: float | None = Field(
        None, ge=0.0, le=1.0, description="probability that the image violates the rule"
    )
    evidence: list[Evidence] = Field(default_factory=list)
    unassessed: list[str] = Field(
        default_factory=list, description="criteria the backend could not assess"
    )
    explanation: str = ""
    raw: str | None = Field(None, description="the model's raw answer, kept for audit")


class PolicyRef(BaseModel):
    id: str
    version: int


class BackendInfo(BaseModel):
    name: str
    models: dict[str, str] = Field(default_factory=dict)


class FileStamp(BaseModel):
    """Size and modification time of a file, to tell whether it changed since it was read."""

    size: int
    mtime_ns: int


class ErrorInfo(BaseModel):
    code: ErrorCode
    message: str
    file: FileStamp | None = Field(
        None,
        description="the file as it was when it failed to decode (a permanent error); --resume "
        "judges it again only if its size or modification time changed",
    )


class Hashes(BaseModel):
    """What identifies an image's content: its PDQ per judged frame (perceptual: close hashes, a
    similar picture) and its md5 (exact: the same bytes; the sha256 is the result's own)."""

    pdq: list[str] = Field(
        default_factory=list, description="PDQ hash (64 hex digits) of each judged frame, in order"
    )
    quality: list[int] = Field(
        default_factory=list,
        description="PDQ quality (0-100) of each frame; below 50 (flat, blank) a PDQ is unreliable",
    )
    md5: str | None = None
    dihedral: list[list[str]] = Field(
        default_factory=list, exclude=True,
        description="per frame, the PDQ of its eight dihedral copies (rotated, mirrored), when a "
        "bank asked for them; matched, never recorded",
    )


class ModerationResult(BaseModel):
    """The judgement of one image under one policy."""

    model_config = ConfigDict(populate_by_name=True)

    schema_version: str = SCHEMA_VERSION
    image: str
    sha256: str | None = None
    policy: PolicyRef
    decision: Action
    verdicts: list[RuleVerdict] = Field(default_factory=list)
    explanation: str = Field("", description="statement of reasons")
    backend: BackendInfo
    timing_ms: dict[str, float] = Field(default_factory=dict)
    media: dict[str, Any] = Field(
        default_factory=dict, description="format, size and frame count of the decoded image"
    )
    error: ErrorInfo | None = None
    hashes: Hashes | None = Field(
        None, description="the image's PDQ and md5, matched against known-content banks"
    )

    @property
    def violated(self) -> list[RuleVerdict]:
        return [v for v in self.verdicts if v.verdict is Verdict.violates]

    @property
    def decided_by_banks(self) -> bool:
        """Every verdict rests on a known-content bank's match: the banks settled the decision and
        no model judged the image (its copies are decided by a person's earlier decision)."""
        return bool(self.verdicts) and all(
            any(e.criterion == KNOWN_CONTENT for e in v.evidence) for v in self.verdicts
        )

    @property
    def matched_banks(self) -> list[str]:
        """The known-content banks a verdict's evidence names (``hash:BANK``), sorted."""
        return sorted({e.signal.removeprefix("hash:") for v in self.verdicts for e in v.evidence
                       if e.criterion == KNOWN_CONTENT and e.signal and e.signal.startswith("hash:")})

    @property
    def uncertain(self) -> list[RuleVerdict]:
        return [v for v in self.verdicts if v.verdict is Verdict.uncertain]

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=False)
