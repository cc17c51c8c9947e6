"""icm: rule-based, explainable image content moderation.

>>> from icm import Moderator
>>> for result in Moderator("general").stream(["photos/"]):   # doctest: +SKIP
...     print(result.image, result.decision, result.explanation)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Moderator", "ModerationResult", "Policy", "RuleVerdict", "load_policy"]

if TYPE_CHECKING:
    from icm.moderator import Moderator
    from icm.policy import Policy, load_policy
    from icm.results import ModerationResult, RuleVerdict

_LAZY = {
    "Moderator": "icm.moderator",
    "ModerationResult": "icm.results",
    "RuleVerdict": "icm.results",
    "Policy": "icm.policy",
    "load_policy": "icm.policy",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'icm' has no attribute {name!r}")
