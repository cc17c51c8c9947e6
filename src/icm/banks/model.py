"""What a bank is: its configuration, its entries, and a match of an image against it.

A bank is a named list of known content (``CAPS_AND_UNDERSCORES``, as HMA names banks) with a
kind: ``deny`` banks hold known violating content and name the one rule it violates (and so the
action and severity); ``allow`` banks hold known benign content (what fools a detector) and name
the rules it clears. A bank holds one signal type: ``pdq`` (perceptual: a match is a hash within
the bank's distance) or the exact ``md5`` / ``sha256`` of the file's bytes, as NCMEC distributes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field, field_validator, model_validator

from icm.errors import InputError

#: PDQ's confident-match distance (python-threatexchange's PDQ_CONFIDENT_MATCH_THRESHOLD)
PDQ_DISTANCE = 31
#: below this PDQ quality a hash is too unreliable to match on (PdqSignal.QUALITY_THRESHOLD)
QUALITY_FLOOR = 50
BANK_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_HEX_DIGITS = {"pdq": 64, "md5": 32, "sha256": 64}


class BankError(InputError):
    """A bank request that cannot be done as asked (a bad name, hash or list line)."""

    code = "bad_bank"


class BankNotFound(BankError):
    http_status = 404
    code = "bank_not_found"


class BankExists(BankError):
    http_status = 409
    code = "bank_exists"


class BankKind(StrEnum):
    deny = "deny"
    allow = "allow"


class SignalType(StrEnum):
    pdq = "pdq"
    md5 = "md5"
    sha256 = "sha256"

    @property
    def exact(self) -> bool:
        return self is not SignalType.pdq


def now() -> datetime:
    return datetime.now(UTC)


def check_name(name: str) -> str:
    """A bank name, or BankError saying what a name must look like."""
    if not BANK_NAME.match(name):
        raise BankError(f"bank name {name!r}: use capital letters, digits and underscores, starting "
                        "with a letter (e.g. KNOWN_VIOLATING)")
    return name


def check_hash(signal: SignalType, value: str) -> str:
    """A hash of the signal type, in lowercase hex; ValueError saying what is wrong."""
    text = value.strip().lower()
    digits = _HEX_DIGITS[signal.value]
    if len(text) != digits or not re.fullmatch(r"[0-9a-f]+", text):
        raise ValueError(f"{value!r} is not a {signal.value} hash ({digits} hex digits)")
    if signal is SignalType.pdq:
        from threatexchange.signal_type.pdq.signal import PdqSignal

        PdqSignal.validate_signal_str(text)  # the field's own check, so the two never disagree
    return text


def checked_entries(config: BankConfig, entries: Sequence[BankEntry]) -> list[BankEntry]:
    """The entries with their hashes checked for the bank's signal type (lowercase hex), or
    BankError naming the bank and the content whose hash is wrong."""
    checked = []
    for entry in entries:
        try:
            checked.append(entry.model_copy(update={"hash": check_hash(config.signal, entry.hash)}))
        except ValueError as exc:
            raise BankError(f"bank {config.name}, content {entry.content_id}: {exc}") from exc
    return checked


class BankConfig(BaseModel):
    """One bank: what it means (kind, rules), what it holds (signal) and how it matches."""

    name: str
    kind: BankKind
    rules: list[str] = Field(
        default_factory=list, description="deny: the one rule its content violates; allow: the rules it "
        "clears; none: a bank that is only looked up (HMA's /m/lookup) and decides no rule"
    )
    signal: SignalType = SignalType.pdq
    distance: int = Field(PDQ_DISTANCE, ge=0, le=256,
                          description="largest PDQ distance that matches (0 for md5/sha256)")
    quality_floor: int = Field(QUALITY_FLOOR, ge=0, le=100,
                               description="an image's PDQ of lower quality never matches this bank")
    dihedral: bool = Field(False, description="also match rotated and mirrored copies (PDQ's eight "
                           "dihedral hashes of the image)")
    dsa_category: str | None = Field(None, description="deny banks: the DSA category of its content")
    description: str = ""
    created_at: datetime = Field(default_factory=now)
    created_by: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @model_validator(mode="before")
    @classmethod
    def _exact_distance(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("signal") in ("md5", "sha256") and "distance" not in data:
            data = {**data, "distance": 0}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> BankConfig:
        if self.kind is BankKind.deny and len(self.rules) > 1:
            raise ValueError("a deny bank names the one rule its content violates")
        if self.kind is BankKind.allow and self.dsa_category is not None:
            raise ValueError("only a deny bank has a DSA category")
        if self.signal.exact and (self.distance != 0 or self.dihedral):
            raise ValueError(f"a {self.signal.value} bank matches exact hashes: no distance, no dihedral")
        return self


class BankEntry(BaseModel):
    """One piece of known content: its hash, the id of the content, and who added it when."""

    content_id: str = Field(min_length=1)
    hash: str
    labels: list[str] = Field(default_factory=list)
    added_by: str | None = None
    added_at: datetime = Field(default_factory=now)
    quality: int | None = Field(None, description="PDQ quality, when hashed here")
    dsa_category: str | None = Field(None, description="deny banks: this content's DSA category, "
                                     "when it differs from the bank's")
    source: str | None = Field(None, description="the file or list it came from")


@dataclass(frozen=True)
class Match:
    """An image's hash found in a bank: which entry, how far, on which frame."""

    bank: str
    kind: BankKind
    rules: tuple[str, ...]
    content_id: str
    distance: int
    #: the judged frame (index in the image) whose hash matched; 0 for a still image
    frame: int = 0
    #: which of the eight dihedral copies matched (0: the image as it is)
    dihedral: int = 0
    dsa_category: str | None = None

    @property
    def signal(self) -> str:
        return f"hash:{self.bank}"
