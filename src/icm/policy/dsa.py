"""A rule's mapping onto the EU DSA Transparency Database's vocabulary (the ``dsa:`` field of a
rule): the ground of a decision under it, its category and keywords, and for illegal content the
legal ground and why. The statement of reasons (:mod:`icm.dsa`) is made from it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from icm.policy.dsa_vocabulary import CATEGORIES, KEYWORDS


def one_of(allowed: Iterable[str], what: str) -> AfterValidator:
    """A string that must be one of ``allowed``; the error names every allowed value."""
    values = tuple(allowed)

    def check(value: str) -> str:
        if value not in values:
            raise ValueError(f"{value!r} is not a {what}; allowed: {', '.join(values)}")
        return value

    return AfterValidator(check)


def enum_schema(allowed: Iterable[str]) -> Any:
    """The allowed values as the JSON Schema's ``enum``."""
    return Field(json_schema_extra={"enum": list(allowed)})


Category = Annotated[str, one_of(CATEGORIES, "DSA statement category"), enum_schema(CATEGORIES)]
Keyword = Annotated[str, one_of(KEYWORDS, "DSA keyword"), enum_schema(KEYWORDS)]


class DsaMapping(BaseModel):
    """How decisions under a rule read in a DSA statement of reasons."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ground: Literal["incompatible", "illegal"] = Field(
        "incompatible", description="incompatible: against the terms and conditions; illegal: against the law"
    )
    category: Category = Field(description="The database's category (STATEMENT_CATEGORY_...).")
    keywords: list[Keyword] = Field(
        default_factory=list, description="The database's keywords (KEYWORD_...), the category_specification."
    )
    keyword_other: str | None = Field(
        None, min_length=1, max_length=500, description="The keyword in words, with KEYWORD_OTHER."
    )
    legal_ground: str | None = Field(
        None, min_length=1, max_length=500, description="The law relied on (required for illegal)."
    )
    explanation: str | None = Field(
        None, min_length=1, max_length=2000,
        description="Why content under this rule is illegal on that ground (required for illegal); for "
        "incompatible, why it is incompatible (default: the rule's text).",
    )
    contractual_ground: str | None = Field(
        None, min_length=1, max_length=500,
        description="The terms-and-conditions clause (incompatible; default: the policy and rule).",
    )
    also_illegal: bool | None = Field(
        None, description="Incompatible content also considered illegal (incompatible_content_illegal)."
    )
    reference_url: str | None = Field(
        None, max_length=500, pattern=r"^https?://[^\s/$.?#][^\s]*$",
        description="URL of the terms or the law relied on.",
    )

    @model_validator(mode="after")
    def _conditional(self) -> DsaMapping:
        if self.ground == "illegal":
            missing = [name for name in ("legal_ground", "explanation") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"ground 'illegal' needs {' and '.join(missing)}")
            if self.contractual_ground is not None or self.also_illegal is not None:
                raise ValueError("contractual_ground and also_illegal are for ground 'incompatible'")
        elif self.legal_ground is not None:
            raise ValueError("legal_ground is for ground 'illegal'")
        if self.keyword_other is not None and "KEYWORD_OTHER" not in self.keywords:
            raise ValueError("keyword_other needs KEYWORD_OTHER among the keywords")
        return self


#: the mapping of a rule that has none: a violation of the platform's own terms
UNMAPPED = DsaMapping(category="STATEMENT_CATEGORY_OTHER_VIOLATION_TC")
