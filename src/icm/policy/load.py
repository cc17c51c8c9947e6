"""Loading policies from YAML files or built-in names, with errors that point at the line."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from icm.errors import InputError
from icm.policy.schema import Policy
from icm.validation import parse_yaml, validation_problems

_BUILTIN_PACKAGE = "icm.policy.builtin"


class PolicyError(InputError):
    """A policy that cannot be loaded: unreadable, not YAML, or not a valid policy."""


def builtin_policy_names() -> list[str]:
    files = resources.files(_BUILTIN_PACKAGE).iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def load_policy(source: str | Path | Policy) -> Policy:
    """Load a policy from a built-in name (``general``, ``icm-r1``), a YAML file, or pass one through."""
    if isinstance(source, Policy):
        return source
    text_source = str(source)
    path = Path(text_source)
    if not path.suffix and text_source in builtin_policy_names():
        text = resources.files(_BUILTIN_PACKAGE).joinpath(f"{text_source}.yaml").read_text("utf-8")
        return parse_policy(text, origin=f"<builtin {text_source}>")
    if not path.exists():
        names = ", ".join(builtin_policy_names())
        raise PolicyError(f"no policy file {text_source!r} and no built-in policy of that name ({names})")
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read policy: {exc}") from exc
    return parse_policy(text, origin=str(path))


def parse_policy(text: str, origin: str = "<policy>") -> Policy:
    """Parse and validate policy YAML; every problem is reported at once, in file order, with its
    line number and field (a YAML syntax error stops parsing: it is reported alone)."""
    data = parse_yaml(text, origin, PolicyError)
    if not isinstance(data, dict):
        raise PolicyError(f"{origin}: a policy is a YAML mapping with id, version and rules")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        node = yaml.compose(text, Loader=yaml.SafeLoader)  # valid YAML: parsed above
        problems = []
        for problem in validation_problems(exc):
            line = _line_of(node, list(problem.loc))
            where = f"{origin}:{line}" if line else origin
            problems.append((line or 0, f"{where}: {problem.text('policy')}"))
        lines = [text for _, text in sorted(problems, key=lambda problem: problem[0])]  # file order
        raise PolicyError("invalid policy:\n  " + "\n  ".join(lines)) from exc


def dump_policy(policy: Policy, header: str = "") -> str:
    """The policy as the YAML an author writes: signal references in their string form
    (``nudenet:BELLY_EXPOSED>=0.5``), defaults left out but for the version, after ``header``
    (comment lines). :func:`parse_policy` reads it back to an equal policy."""
    data = policy.model_dump(mode="json", exclude_defaults=True)
    data = {"id": data.pop("id"), "version": policy.version, **data}
    for rule, rule_data in zip(policy.rules, data["rules"], strict=True):
        for criterion, criterion_data in zip(rule.criteria, rule_data.get("criteria", []), strict=True):
            if criterion.signals:
                criterion_data["signals"] = [str(ref) for ref in criterion.signals]
    return header + yaml.dump(data, Dumper=_PolicyDumper, sort_keys=False, allow_unicode=True, width=100)


class _PolicyDumper(yaml.SafeDumper):
    """Multi-line text as a literal block (as an author writes it); text holding a line break YAML
    would fold when unquoted (NEL, LS, PS) double-quoted, so that it reads back unchanged."""


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if any(ch in value for ch in "\x85\u2028\u2029") else "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_PolicyDumper.add_representer(str, _represent_text)


def _line_of(node: Any, loc: list[str | int]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            child = next((v for k, v in node.value if k.value == part), None)
            if child is None:  # an unknown key: point at the key itself
                key = next((k for k, _ in node.value if k.value == part), None)
                return key.start_mark.line + 1 if key is not None else line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if part < len(node.value) else None
        if child is None:
            return line
        node, line = child, child.start_mark.line + 1
    return line
