"""Code the tests hand to Ray's worker processes, importable there (tests/ is on their path)."""

from __future__ import annotations

import os
from pathlib import Path

from icm.backends.local.engine import LocalBackend
from icm.media import DecodedImage
from icm.policy.schema import Policy
from icm.results import RuleVerdict


class DiesOnce(LocalBackend):
    """The local engine, except that the process judging ``victim`` dies on the spot (as a
    crashed or preempted worker does), once: the marker file says it already happened."""

    def __init__(self, victim: str, marker: Path) -> None:
        super().__init__()
        self.victim = victim
        self.marker = marker

    def judge(self, image: DecodedImage, policy: Policy) -> list[RuleVerdict]:
        if image.source.endswith(self.victim) and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)
        return super().judge(image, policy)


def squarer() -> object:
    """A factory for :func:`icm.scale.ray.map_on_ray`: builds the per-item function once."""
    return lambda x: x * x


def unloadable() -> LocalBackend:
    """A backend factory that fails where it runs, as a model path missing on the workers does."""
    from icm.backends.base import BackendError

    raise BackendError("no model directory at '/models/missing'")
