"""Throughput and latency of the local engine, end to end, against the raw detectors alone.

    python benchmarks/local_engine.py --images 40 [--policy general] [--workers N]

Both figures come from the same process on the same images:
  raw       the detectors called one after another, directly, on frames decoded beforehand (no
            decoding, no signal sharing, no rule evaluation, no writing), each with onnxruntime's
            default threads: what a hand-written sequential script gets;
  icm       Moderator.run with default settings (unless --workers is given) from the image files
            to a JSONL file: decoding (overlapped with inference), the detectors pipelined across
            the cores, every rule's verdict and explanation, one flushed line per image.
The ratio raw_seconds / icm_seconds is icm's speed against the sequential detectors (target on 2
cores: >= 1.4). Beside it: per-image latency (and each raw detector's median), and the cores each
path keeps busy (the process's CPU time / wall time).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from report import machine, print_report

SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "retina", "immunohistochemistry")
TEXTS = ("CRYPTO GIVEAWAY\ncall +1 555-123-4567", "Happy birthday Sam!", "www.example-shop.com\n50% off")


def make_images(folder: Path, count: int) -> list[Path]:
    from skimage import data

    photos = [Image.fromarray(getattr(data, name)()).convert("RGB") for name in SAMPLES]
    paths = []
    for i in range(count):
        if i % 4 == 3:
            image = Image.new("RGB", (800, 450), (240, 235, 220))
            draw = ImageDraw.Draw(image)
            font = ImageFont.load_default(size=48)
            for j, line in enumerate(TEXTS[i % len(TEXTS)].split("\n")):
                draw.text((40, 60 + 90 * j), line, fill="black", font=font)
            path = folder / f"{i:04d}-text.png"
            image.save(path)
        else:
            photo = photos[i % len(photos)]
            path = folder / f"{i:04d}-photo.jpg"
            photo.save(path, quality=90)
        paths.append(path)
    return paths


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raw_detectors(
    detectors: list, frames: list[np.ndarray], per_detector: dict[str, list[float]]
) -> tuple[float, list[float]]:
    """Each detector's own API on pre-decoded frames, the way a hand-written script calls them;
    each call's milliseconds are added to ``per_detector[source]``."""
    latencies = []
    start = time.perf_counter()
    for frame in frames:
        t = time.perf_counter()
        for d in detectors:
            before = time.perf_counter()
            d.detect(frame)
            per_detector.setdefault(d.source, []).append((time.perf_counter() - before) * 1000)
        latencies.append((time.perf_counter() - t) * 1000)
    return time.perf_counter() - start, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--policy", default="general")
    parser.add_argument("--workers", type=int, default=None, help="default: the Moderator's own choice")
    parser.add_argument("--rounds", type=int, default=3, help="alternating raw / icm passes")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    from icm import Moderator
    from icm.backends.local.detectors import DETECTORS
    from icm.media import load_image

    raw_seconds = icm_seconds = raw_cpu = icm_cpu = 0.0
    raw_latency: list[float] = []
    latencies: list[float] = []
    per_detector: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        paths = make_images(folder, args.images)
        moderator = Moderator(args.policy, workers=args.workers)
        moderator.moderate(paths[0])  # load and warm the detectors the policy needs
        frames = [load_image(p).frames[0] for p in paths]
        detectors = [DETECTORS[s]() for s in sorted(moderator.policy.signal_sources)]
        for d in detectors:
            d.detect(frames[0])
        # Alternate the two, round after round, so that drifting load on a shared machine
        # weighs on both alike.
        for round_ in range(args.rounds):
            cpu = cpu_seconds()
            seconds, lat = raw_detectors(detectors, frames, per_detector)
            raw_cpu += cpu_seconds() - cpu
            raw_seconds += seconds
            raw_latency += lat
            out = Path(tmp) / f"results-{round_}.jsonl"
            start, cpu = time.perf_counter(), cpu_seconds()
            summary = moderator.run(paths, out=out, on_result=lambda r: latencies.append(r.timing_ms["total"]))
            icm_seconds += time.perf_counter() - start
            icm_cpu += cpu_seconds() - cpu
            lines = out.read_text().splitlines()
            assert len(lines) == len(paths) and all(json.loads(line)["error"] is None for line in lines)
    total = len(paths) * args.rounds

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    q = lambda xs, p: float(np.percentile(xs, p))  # noqa: E731
    report = {
        "images": len(paths),
        "rounds": args.rounds,
        "policy": args.policy,
        "detectors": sorted(moderator.policy.signal_sources),
        "workers": moderator.workers,
        "raw_images_per_s": round(total / raw_seconds, 2),
        "icm_images_per_s": round(total / icm_seconds, 2),
        "ratio": round(raw_seconds / icm_seconds, 3),
        "raw_p50_ms": round(q(raw_latency, 50), 1),
        "raw_p95_ms": round(q(raw_latency, 95), 1),
        "icm_p50_ms": round(q(latencies, 50), 1),
        "icm_p95_ms": round(q(latencies, 95), 1),
        "icm_mean_ms": round(statistics.fmean(latencies), 1),
        "raw_detector_p50_ms": {source: round(q(ms, 50), 1) for source, ms in sorted(per_detector.items())},
        "raw_cores_busy": round(raw_cpu / raw_seconds, 2),
        "icm_cores_busy": round(icm_cpu / icm_seconds, 2),
        "peak_rss_mib": round(peak_mib, 1),
        "judged": summary.judged,
        "machine": machine(),
    }
    print_report(report, args.json)


if __name__ == "__main__":
    main()
