"""Short image labels (categories) -> policy criteria -> a verdict per rule.

An image that carries only a label ("upper_bust", "kiss", "normal") is judged under any policy by
mapping the label to criterion ids; a rule is violated when the label's criteria meet it. The
built-in map covers the 35 categories of the ICM-Instruct release; users pass their own with
``--label-map FILE`` (YAML: ``label: [criterion-id, ...]``, an empty list for benign labels).
"""

from __future__ import annotations

import re
from pathlib import Path

from icm.errors import InputError
from icm.policy.schema import Criterion, Policy, Rule
from icm.validation import read_yaml

#: ICM-Instruct release categories -> the criterion ids the built-in icm-r1..r4 policies use.
ICM_CATEGORIES: dict[str, list[str]] = {
    **{f"{region}_normal": [] for region in ("upper", "middle", "lower", "whole")},
    **{f"{r}_shoulders_and_belly": ["shoulders-belly", "belly"] for r in ("upper", "middle", "lower", "whole")},
    **{f"{r}_backless": ["bare-back"] for r in ("upper", "whole")},
    **{f"{r}_leg": ["bare-legs"] for r in ("middle", "lower", "whole")},
    **{f"{r}_large_bare": ["large-bare-area"] for r in ("upper", "lower", "whole")},
    "upper_bust": ["cleavage"],
    "middle_hips": ["hips"],
    "lower_hips": ["hips"],
    "middle_crotch": ["crotch-underwear"],
    "bite_finger": ["suggestive-mouth"],
    "bite_lip": ["suggestive-mouth"],
    "pout": ["suggestive-mouth"],
    "tongue": ["suggestive-mouth"],
    "sexy_kiss": ["kissing"],
    "liftup": ["undressing"],
    "skirt": ["undressing"],
    "takeoff": ["undressing"],
    "stockings": ["undressing"],
    "wearing_stockings": ["undressing"],
    "wearing_bras": ["undressing"],
    "wet": ["wet-clothes"],
    "male_sexy": ["suggestive-overall"],
    "sexy_imagetext": ["suggestive-text"],
    "sexy_implicit": ["suggestive-objects"],
}
BENIGN_DESCRIPTION = "The exposure level of the image is very low; it is an appropriate image."
_CATEGORY = re.compile(r"^(?P<category>[a-z_]+?)_(?=\d{8,})")


class LabelError(InputError):
    """A label that maps to nothing known, or a malformed label map."""


def category_from_filename(name: str) -> str | None:
    """``upper_bust_202207201106175520_v2.jpg.txt`` -> ``upper_bust`` (the release's naming)."""
    match = _CATEGORY.match(Path(name).name)
    return match["category"] if match else None


def load_label_map(path: Path | None) -> dict[str, list[str]]:
    if path is None:
        return dict(ICM_CATEGORIES)
    data = read_yaml(path, "the label map", LabelError)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(c, str) for c in v) for k, v in data.items()
    ):
        raise LabelError(f"{path}: a label map is a mapping 'label: [criterion-id, ...]'")
    return {k: list(v) for k, v in data.items()}


def label_criteria(label: str, label_map: dict[str, list[str]], policies: list[Policy]) -> list[str]:
    """The criterion ids a label stands for; a label that is itself a criterion id maps to itself."""
    if label in label_map:
        return label_map[label]
    known = {c.id for p in policies for r in p.rules for c in r.criteria}
    if label in known:
        return [label]
    raise LabelError(
        f"label {label!r} is neither in the label map nor a criterion id of {[p.id for p in policies]}; "
        "add it to a --label-map file (an empty list marks a benign label)"
    )


def rule_violated(rule: Rule, criteria: list[str]) -> bool:
    ids = [c.id for c in rule.criteria]
    hits = [c for c in ids if c in criteria]
    return bool(hits) and (rule.match == "any" or len(hits) == len(ids))


def policy_labels(policy: Policy, criteria: list[str]) -> dict[str, bool]:
    """rule id -> violated, for an image whose label stands for these criteria."""
    return {rule.id: rule_violated(rule, criteria) for rule in policy.rules}


def explicit_description(policy: Policy | list[Policy], criteria: list[str]) -> str:
    """The prior given to the describing model: what is known about an image with this label."""
    policies = policy if isinstance(policy, list) else [policy]
    found: dict[str, Criterion] = {}
    for p in policies:
        for rule in p.rules:
            for c in rule.criteria:
                if c.id in criteria and c.id not in found:
                    found[c.id] = c
    if not criteria:
        return BENIGN_DESCRIPTION
    return " ".join(found[c].description for c in criteria if c in found) or BENIGN_DESCRIPTION
