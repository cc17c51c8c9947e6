"""The statement of reasons as the EU DSA Transparency Database takes it (``POST /api/v1/statements``).

The rules are the database's own (``app/Http/Requests/StatementStoreRequest.php`` and
``app/Services/GroupedSubmissionsService.php``, schema of 1 July 2025): required fields, allowed
values, the fields one value makes required, lengths and date formats, and from its API
documentation (``resources/markdown/api-documentation.md``) that an end date is not before the
application date. Where the database silently drops a field that does not apply
(``exclude_unless``), this model refuses it instead, so a statement always says exactly what is
sent.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from icm.policy.dsa import Category, Keyword, enum_schema, one_of
from icm.policy.dsa_vocabulary import (
    ACCOUNT_TYPES,
    AUTOMATED_DECISIONS,
    CONTENT_TYPES,
    COUNTRIES,
    DECISION_GROUNDS,
    LANGUAGES,
    SOURCE_TYPES,
    VISIBILITIES,
)

#: the database takes at most this many statements in one call
BATCH_LIMIT = 100

PUID_PATTERN = r"^[a-zA-Z0-9_-]+$"

_MONETARY = ("DECISION_MONETARY_SUSPENSION", "DECISION_MONETARY_TERMINATION", "DECISION_MONETARY_OTHER")
_PROVISION = (
    "DECISION_PROVISION_PARTIAL_SUSPENSION", "DECISION_PROVISION_TOTAL_SUSPENSION",
    "DECISION_PROVISION_PARTIAL_TERMINATION", "DECISION_PROVISION_TOTAL_TERMINATION",
)
_ACCOUNT = ("DECISION_ACCOUNT_SUSPENDED", "DECISION_ACCOUNT_TERMINATED")


def _day(earliest: str | None, latest: str) -> AfterValidator:
    """``YYYY-MM-DD`` (leading zeroes), a real day, within the database's range."""

    def check(value: str) -> str:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(f"{value!r} is not a date in the form YYYY-MM-DD")
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a day of the calendar") from None
        if earliest is not None and day < date.fromisoformat(earliest):
            raise ValueError(f"{value} is before {earliest}")
        if day > date.fromisoformat(latest):
            raise ValueError(f"{value} is after {latest}")
        return value

    return AfterValidator(check)


Visibility = Annotated[str, one_of(VISIBILITIES, "decision visibility"), enum_schema(VISIBILITIES)]
ContentType = Annotated[str, one_of(CONTENT_TYPES, "content type"), enum_schema(CONTENT_TYPES)]
Country = Annotated[str, one_of(COUNTRIES, "EU/EEA country code"), enum_schema(COUNTRIES)]
Monetary = Annotated[str, one_of(_MONETARY, "monetary decision"), enum_schema(_MONETARY)]
Provision = Annotated[str, one_of(_PROVISION, "service decision"), enum_schema(_PROVISION)]
AccountDecision = Annotated[str, one_of(_ACCOUNT, "account decision"), enum_schema(_ACCOUNT)]
AccountType = Annotated[str, one_of(ACCOUNT_TYPES, "account type"), enum_schema(ACCOUNT_TYPES)]
Ground = Annotated[str, one_of(DECISION_GROUNDS, "decision ground"), enum_schema(DECISION_GROUNDS)]
Language = Annotated[str, one_of(sorted(LANGUAGES), "ISO 639-1 language code"), enum_schema(sorted(LANGUAGES))]
SourceType = Annotated[str, one_of(SOURCE_TYPES, "source type"), enum_schema(SOURCE_TYPES)]
Automation = Annotated[str, one_of(AUTOMATED_DECISIONS, "automated decision"), enum_schema(AUTOMATED_DECISIONS)]
YesNo = Literal["Yes", "No"]
ContentDay = Annotated[str, _day("2000-01-01", "2038-01-01")]
ApplicationDay = Annotated[str, _day("2020-01-01", "2038-01-01")]
EndDay = Annotated[str, _day(None, "2038-01-01")]
Text500 = Annotated[str, Field(min_length=1, max_length=500)]
Text2000 = Annotated[str, Field(min_length=1, max_length=2000)]


class ContentId(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    ean_13: str = Field(alias="EAN-13", pattern=r"^[0-9]{13}$")


class Statement(BaseModel):
    """One statement of reasons (DSA Article 17), in the Transparency Database's submission form."""

    model_config = ConfigDict(extra="forbid")

    decision_visibility: list[Visibility] | None = Field(None, min_length=1)
    decision_visibility_other: Text500 | None = None
    decision_monetary: Monetary | None = None
    decision_monetary_other: Text500 | None = None
    decision_provision: Provision | None = None
    decision_account: AccountDecision | None = None
    account_type: AccountType | None = None
    category_specification: list[Keyword] | None = None
    category_specification_other: Text500 | None = None

    decision_ground: Ground
    decision_ground_reference_url: str | None = Field(
        None, max_length=500, pattern=r"^https?://[^\s/$.?#][^\s]*$"
    )
    illegal_content_legal_ground: Text500 | None = None
    illegal_content_explanation: Text2000 | None = None
    incompatible_content_ground: Text500 | None = None
    incompatible_content_explanation: Text2000 | None = None
    incompatible_content_illegal: YesNo | None = None

    content_type: list[ContentType] = Field(min_length=1)
    content_type_other: Text500 | None = None
    category: Category
    category_addition: list[Category] | None = None
    territorial_scope: list[Country] | None = None
    content_language: Language | None = None
    content_id: ContentId | None = None

    content_date: ContentDay
    application_date: ApplicationDay
    end_date_account_restriction: EndDay | None = None
    end_date_monetary_restriction: EndDay | None = None
    end_date_service_restriction: EndDay | None = None
    end_date_visibility_restriction: EndDay | None = None

    decision_facts: str = Field(min_length=1, max_length=5000)
    source_type: SourceType
    source_identity: Text500 | None = None
    automated_detection: YesNo
    automated_decision: Automation
    puid: str = Field(min_length=1, max_length=500, pattern=PUID_PATTERN)

    @model_validator(mode="after")
    def _conditional(self) -> Statement:
        problems: list[str] = []
        if not (self.decision_visibility or self.decision_monetary or self.decision_provision
                or self.decision_account):
            problems.append("one of decision_visibility, decision_monetary, decision_provision and "
                            "decision_account is required")
        _depends(problems, "decision_visibility_other", self.decision_visibility_other,
                 "DECISION_VISIBILITY_OTHER" in (self.decision_visibility or []),
                 "decision_visibility holds DECISION_VISIBILITY_OTHER")
        _depends(problems, "decision_monetary_other", self.decision_monetary_other,
                 self.decision_monetary == "DECISION_MONETARY_OTHER", "decision_monetary is DECISION_MONETARY_OTHER")
        _depends(problems, "content_type_other", self.content_type_other,
                 "CONTENT_TYPE_OTHER" in self.content_type, "content_type holds CONTENT_TYPE_OTHER")
        illegal = self.decision_ground == "DECISION_GROUND_ILLEGAL_CONTENT"
        for name in ("illegal_content_legal_ground", "illegal_content_explanation"):
            _depends(problems, name, getattr(self, name), illegal, "decision_ground is DECISION_GROUND_ILLEGAL_CONTENT")
        for name in ("incompatible_content_ground", "incompatible_content_explanation"):
            _depends(problems, name, getattr(self, name), not illegal,
                     "decision_ground is DECISION_GROUND_INCOMPATIBLE_CONTENT")
        if illegal and self.incompatible_content_illegal is not None:
            problems.append("incompatible_content_illegal applies only when decision_ground is "
                            "DECISION_GROUND_INCOMPATIBLE_CONTENT")
        if self.source_type == "SOURCE_VOLUNTARY" and self.source_identity is not None:
            problems.append("source_identity does not apply to SOURCE_VOLUNTARY")
        if self.category_specification_other is not None and "KEYWORD_OTHER" not in (self.category_specification or []):
            problems.append("category_specification_other needs KEYWORD_OTHER in category_specification")
        for name in ("end_date_account_restriction", "end_date_monetary_restriction",
                     "end_date_service_restriction", "end_date_visibility_restriction"):
            end = getattr(self, name)
            if end is not None and end < self.application_date:  # both YYYY-MM-DD: compared as text
                problems.append(f"{name} ({end}) is before application_date ({self.application_date})")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def payload(self) -> dict[str, Any]:
        """The JSON object the database takes: the fields that are set."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _depends(problems: list[str], name: str, value: object, applies: bool, condition: str) -> None:
    if applies and value is None:
        problems.append(f"{name} is required when {condition}")
    elif not applies and value is not None:
        problems.append(f"{name} applies only when {condition}")
