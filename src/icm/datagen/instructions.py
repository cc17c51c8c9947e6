"""The user turns and fixed answer lines of instruction samples, rendered from versioned templates.

Both the importer of the public release and the generation pipeline write these, so a model
trained on either sees the same wording: ``instruction.v1`` (a free-text explanation request),
``conclusion.v1`` (the verdict line that ends a free-text explanation) and ``mc.v1`` (a
multiple-choice question with its options).
"""

from __future__ import annotations

import hashlib

from icm.policy.schema import Policy
from icm.prompts import render
from icm.tables import MCRow


def instruction(policy: Policy, image_id: str) -> str:
    """One of the template's paraphrases, chosen by the image so a re-run is identical, then the rules."""
    pick = int(hashlib.sha256(image_id.encode()).hexdigest(), 16)
    return render("instruction", policy=policy, pick=pick)


def conclusion(policy: Policy, labels: dict[str, bool]) -> str:
    """``Conclusion: ...``: the rules of ``policy`` the image violates (rule id -> violated), or none."""
    return render("conclusion", policy=policy, violated=[rule for rule in policy.rules if labels[rule.id]])


def multiple_choice_prompt(row: MCRow) -> str:
    """The question, its options ``A. ...`` to ``D. ...``, and how to answer."""
    return render("mc", question=row.question, choices=row.choices)
