"""Pydantic validation errors as short problems: where in the input, and what is wrong there.

Every reader of typed input (policies, training configs, labels and results files, model answers)
words its problems the same way: ``rules[0].criteria[1].id: String should match pattern ...``;
and every YAML file read into a model (policies, label maps, training configs, backend options)
is read, and its problems worded, by the helpers at the end of this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from icm.errors import IcmError

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound="BaseModel")


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


# -- YAML files read into typed models ---------------------------------------------------------


def parse_yaml(text: str, origin: str, error: type[IcmError]) -> Any:
    """The YAML document in ``text``; a syntax error is ``error("ORIGIN:LINE: not valid YAML: ...")``."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark is not None else origin
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{where}: not valid YAML: {problem}") from exc


def read_yaml(path: Path, what: str, error: type[IcmError]) -> Any:
    """The YAML document in the file ``path`` (``what`` it holds names it in errors): one
    ``error`` for a file that cannot be read (``PATH: cannot read WHAT: reason``) or YAML that is
    not valid (``PATH:LINE: not valid YAML: problem``)."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read {what}: {exc}") from exc
    return parse_yaml(text, str(path), error)


def read_yaml_mapping(path: Path, what: str, error: type[IcmError], *, shape: str) -> dict[str, Any]:
    """:func:`read_yaml` for a file that holds a mapping with string keys (an empty file: an empty
    mapping); anything else is ``error("PATH: SHAPE")``."""
    data = read_yaml(path, what, error)
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise error(f"{path}: {shape}")
    return data


def validate_as(model: type[M], data: Any, origin: str, what: str, error: type[IcmError], root: str = "value") -> M:
    """``model`` validated from ``data``; every problem at once, one a line:
    ``ORIGIN: invalid WHAT:\\n  field: problem``."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [problem.text(root) for problem in validation_problems(exc)]
        raise error(f"{origin}: invalid {what}:\n  " + "\n  ".join(problems)) from exc
