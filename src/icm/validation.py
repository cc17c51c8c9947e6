"""Pydantic validation errors as short problems: where in the input, and what is wrong there.

Every reader of typed input (policies, training configs, labels and results files, model answers)
words its problems the same way: ``rules[0].criteria[1].id: String should match pattern ...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


@dataclass(frozen=True)
class Problem:
    """One problem of a validation error."""

    loc: tuple[str | int, ...]  # the path into the input, validator names left out
    message: str

    @property
    def path(self) -> str:
        """``("rules", 0, "severity")`` -> ``rules[0].severity``."""
        text = ""
        for part in self.loc:
            text += f"[{part}]" if isinstance(part, int) else f".{part}"
        return text.removeprefix(".")

    def text(self, root: str = "value") -> str:
        """``path: message``; ``root`` names the input itself when the problem is at its top."""
        return f"{self.path or root}: {self.message}"


def validation_problems(exc: ValidationError) -> list[Problem]:
    """The problems of a pydantic ValidationError, in its order."""
    problems = []
    for error in exc.errors():
        # Union and validator steps ("function-after[...]") are pydantic's, not the input's.
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        problems.append(Problem(loc, error["msg"].removeprefix("Value error, ")))
    return problems


def describe_validation_error(exc: ValidationError, root: str = "value") -> str:
    """Every problem on one line: ``image: Field required; verdicts[0].verdict: ...``."""
    return "; ".join(problem.text(root) for problem in validation_problems(exc))
