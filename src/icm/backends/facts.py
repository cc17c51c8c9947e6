"""The local engine's findings as sentences, given to a model as known facts (``with_signals``).

The paper's "explicit description" prior at inference: what the detectors saw, where and how sure.
"""

from __future__ import annotations

import threading

from icm.media import DecodedImage
from icm.policy.schema import Policy
from icm.results import Evidence


class LocalFacts:
    """The local engine's findings about one image, one sentence per criterion that holds."""

    def __init__(self) -> None:
        from icm.backends.local.engine import LocalBackend

        self._engine = LocalBackend()
        self._lock = threading.Lock()

    def prepare(self, policy: Policy) -> None:
        self._engine.prepare(policy)

    def __call__(self, image: DecodedImage, policy: Policy) -> list[str]:
        from icm.backends.local.assess import assess_criterion

        with self._lock:
            observations = self._engine.observe(image, policy)
        facts: list[str] = []
        for rule in policy.rules:
            for criterion in rule.criteria:
                assessment = assess_criterion(criterion, observations)
                if not assessment.holds:
                    continue
                details = ", ".join(_evidence_phrase(e) for e in assessment.evidence)
                fact = f"{criterion.description.rstrip('.')} (detected: {details})."
                if fact not in facts:
                    facts.append(fact)
        return facts


def _evidence_phrase(evidence: Evidence) -> str:
    phrase = evidence.signal or evidence.criterion
    if evidence.text:
        phrase += f' "{evidence.text}"'
    if evidence.score is not None:
        phrase += f" {evidence.score:.2f}"
    return phrase
