"""Known-content matching: what hashing costs per image, how fast and how exactly a bank of
millions answers, what it holds in memory, how long it loads, and what a bank catches.

    python benchmarks/hash_match.py                      # everything, 1M entries at the top
    python benchmarks/hash_match.py --sizes 10000 100000 --queries 500 --json

Figures:

* **PDQ ms per image**: ``hash_image`` on frames already decoded (the sample photographs), and the
  overhead it adds to the local engine: the Moderator's own ``timing_ms`` (hash / total) over the
  same images under ``--policy`` (default ``general``).
* **Lookups** at each size: a bank of random PDQ hashes with, for half the queries, an entry
  planted at a distance of 0-31 (the other half miss); one query per call, as the Moderator asks.
  lookups/s, p50 and p99 in ms, **recall** against a linear scan of every entry (the fraction of
  the entries within 31 that the index found; exact means 1.0), the memory the index holds per
  million entries, the time to build it and to add one more, and, on the same entries, faiss's
  ``IndexBinaryMultiHash`` and python-threatexchange's own ``PDQIndex`` (up to ``--tx-max``).
* **Load**: a bank folder of N entries read and indexed by a fresh ``BankMatcher`` (the service's
  and the CLI's cold start), at the sizes up to ``--load-max``.
* **Distance per alteration** of each sample photograph, and the nearest of PDQ's eight dihedral
  hashes (what a ``--dihedral`` bank compares) for the rotations and mirrors.
The 1M run is bounded: the linear scan checks ``--recall-queries`` queries, the load test stops
at ``--load-max``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the sample images the tests use

PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "horse",
               "hubble_deep_field", "immunohistochemistry")
OTHER_SAMPLES = ("page", "retina", "logo", "text", "grass", "gravel", "brick", "colorwheel")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def _crop(image: Image.Image, share: float) -> Image.Image:
    dx, dy = round(image.width * share), round(image.height * share)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def _border(image: Image.Image, pixels: int) -> Image.Image:
    framed = Image.new("RGB", (image.width + 2 * pixels, image.height + 2 * pixels), (0, 0, 0))
    framed.paste(image, (pixels, pixels))
    return framed


def _overlay(image: Image.Image) -> Image.Image:
    copy = image.copy()
    font = ImageFont.load_default(size=max(12, image.height // 25))
    ImageDraw.Draw(copy).text((10, 10), "@someone", fill=(255, 255, 255), font=font)
    return copy


def _resized(image: Image.Image, factor: float) -> Image.Image:
    return image.resize((round(image.width * factor), round(image.height * factor)), Image.LANCZOS)


ALTERATIONS: dict[str, Any] = {
    "jpeg q30": lambda im: _jpeg(im, 30),
    "jpeg q95": lambda im: _jpeg(im, 95),
    "resize 0.25x": lambda im: _resized(im, 0.25),
    "resize 2x": lambda im: _resized(im, 2.0),
    "greyscale": lambda im: im.convert("L").convert("RGB"),
    "crop 1% a side": lambda im: _crop(im, 0.01),
    "crop 2% a side": lambda im: _crop(im, 0.02),
    "crop 5% a side": lambda im: _crop(im, 0.05),
    "text overlay": _overlay,
    "20 px border": lambda im: _border(im, 20),
    "rotate 90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "rotate 180": lambda im: im.transpose(Image.Transpose.ROTATE_180),
    "mirror": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
}
DIHEDRAL = {"rotate 90", "rotate 180", "mirror"}


def _samples(names: tuple[str, ...]) -> dict[str, Image.Image]:
    from helpers import sample_image

    return {name: sample_image(name).convert("RGB") for name in names}


# -- hashing ---------------------------------------------------------------------------------


def bench_hashing(policy: str, rounds: int) -> dict[str, Any]:
    from icm import Moderator
    from icm.banks.hashing import hash_image
    from icm.media import load_image

    photos = _samples(PHOTOGRAPHS)
    decoded = {name: _png(image) for name, image in photos.items()}
    per_image = []
    for _ in range(rounds):
        for name, data in decoded.items():
            image = load_image(f"{name}.png", data=data)
            started = time.perf_counter()
            hash_image(image)
            per_image.append((time.perf_counter() - started) * 1000)
    dihedral = []
    for name, data in decoded.items():
        image = load_image(f"{name}.png", data=data)
        started = time.perf_counter()
        hash_image(image, dihedral=True)
        dihedral.append((time.perf_counter() - started) * 1000)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for name, image in photos.items():
            path = Path(folder) / f"{name}.jpg"
            image.save(path, quality=90)
            paths.append(path)
        moderator = Moderator(policy, workers=1)
        moderator.moderate(paths[0])  # the detectors loaded before anything is timed
        results = [moderator.moderate(path) for _ in range(rounds) for path in paths]
        moderator.close()
    hash_ms = sum(r.timing_ms["hash"] for r in results)
    total_ms = sum(r.timing_ms["total"] for r in results)
    return {
        "pdq_ms_p50": round(statistics.median(per_image), 2),
        "pdq_ms_mean": round(statistics.fmean(per_image), 2),
        "pdq_dihedral_ms_mean": round(statistics.fmean(dihedral), 2),
        "images": len(per_image),
        "engine_policy": policy,
        "engine_ms_per_image": round(total_ms / len(results), 1),
        "hash_ms_per_image_in_engine": round(hash_ms / len(results), 2),
        "overhead_pct": round(100 * hash_ms / (total_ms - hash_ms), 2),
    }


# -- lookups ---------------------------------------------------------------------------------


def _random_hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, 32), dtype=np.uint8)


def _flip(rng: np.random.Generator, row: np.ndarray, bits: int) -> np.ndarray:
    unpacked = np.unpackbits(row)
    unpacked[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(unpacked)


def bench_lookups(size: int, queries: int, recall_queries: int, tx_max: int, seed: int = 7) -> dict[str, Any]:
    from icm.banks.index import PdqIndex, linear_search

    rng = np.random.default_rng(seed)
    codes = _random_hashes(rng, size)
    hashes = [row.tobytes().hex() for row in codes]
    planted = rng.choice(size, queries // 2, replace=False)
    query_rows = [_flip(rng, codes[i], int(rng.integers(0, 32))) for i in planted]
    query_rows += list(_random_hashes(rng, queries - len(query_rows)))
    order = rng.permutation(len(query_rows))
    query_hashes = [query_rows[i].tobytes().hex() for i in order]

    started = time.perf_counter()
    index = PdqIndex(31)
    for start in range(0, size, 100_000):  # grown in parts, as entries come
        index.add(hashes[start:start + 100_000])
    build_s = time.perf_counter() - started

    index.search(query_hashes[:10])  # warm
    latencies = []
    answers = []
    started = time.perf_counter()
    for query in query_hashes:
        t0 = time.perf_counter()
        answers.append(index.search([query])[0])
        latencies.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    found = expected = 0
    for query, answer in list(zip(query_hashes, answers, strict=True))[:recall_queries]:
        truth = set(linear_search(codes, query, 31))
        expected += len(truth)
        found += len(truth & set(answer))
    out: dict[str, Any] = {
        "entries": size,
        "queries": len(query_hashes),
        "lookups_per_s": round(len(query_hashes) / elapsed),
        "p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "p99_ms": round(float(np.percentile(latencies, 99)), 3),
        "recall": round(found / expected, 4) if expected else None,
        "recall_checked": f"{min(recall_queries, len(query_hashes))} queries, {expected} entries within 31",
        "build_s": round(build_s, 2),
        "index_mib_per_million": round(index.memory_bytes() / 2**20 * 1_000_000 / size, 1),
    }
    grow = time.perf_counter()
    index.add([hashes[0]])
    out["add_one_ms"] = round((time.perf_counter() - grow) * 1000, 2)
    out |= _faiss(codes, query_hashes[: min(len(query_hashes), 300)])
    if size <= tx_max:
        out |= _threatexchange(hashes, query_hashes)
    del index
    return out


def _faiss(codes: np.ndarray, queries: list[str]) -> dict[str, Any]:
    """faiss's IndexBinaryMultiHash (16 x 16 bits, one flip: what python-threatexchange's PDQ
    index wraps) on the same entries, for comparison."""
    import faiss

    from icm.banks.index import pdq_array

    started = time.perf_counter()
    index = faiss.IndexBinaryMultiHash(256, 16, 16)
    index.nflip = 1
    index.add(codes)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    for query in queries:
        index.range_search(pdq_array([query]), 32)
    elapsed = time.perf_counter() - started
    return {"faiss_build_s": round(build_s, 2), "faiss_lookups_per_s": round(len(queries) / elapsed)}


def _threatexchange(hashes: list[str], queries: list[str]) -> dict[str, Any]:
    """python-threatexchange's PDQIndex (PdqSignal's index) on the same entries and queries."""
    from threatexchange.signal_type.pdq.pdq_index import PDQIndex

    started = time.perf_counter()
    index = PDQIndex(entries=((h, i) for i, h in enumerate(hashes)))
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    one = time.perf_counter()
    index.add(hashes[0], -1)  # one more entry, as a reviewer's decision adds one
    add_one_ms = (time.perf_counter() - one) * 1000
    started = time.perf_counter()
    for query in queries:
        index.query(query)
    elapsed = time.perf_counter() - started
    return {"tx_build_s": round(build_s, 2), "tx_add_one_ms": round(add_one_ms, 1),
            "tx_lookups_per_s": round(len(queries) / elapsed)}


def bench_load(size: int, seed: int = 11) -> dict[str, Any]:
    from icm.banks.folder import BankFolder
    from icm.banks.matcher import BankMatcher
    from icm.banks.model import BankConfig, BankEntry

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as folder:
        banks = BankFolder(folder)
        bank = banks.create(BankConfig(name="BIG", kind="deny", rules=["r"]))
        codes = _random_hashes(rng, size)
        for start in range(0, size, 100_000):
            bank.add([BankEntry(content_id=f"c{start + i}", hash=row.tobytes().hex(), added_by="bench")
                      for i, row in enumerate(codes[start:start + 100_000])])
        file_mib = (Path(folder) / "BIG" / "entries.jsonl").stat().st_size / 2**20
        started = time.perf_counter()
        matcher = BankMatcher(banks)
        matcher.refresh()
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        bank.add([BankEntry(content_id="one-more", hash=codes[0].tobytes().hex())])
        matcher.refresh(force=True)
        grow_ms = (time.perf_counter() - started) * 1000
        assert len(matcher) == size + 1
    return {"entries": size, "file_mib": round(file_mib, 1), "load_s": round(load_s, 2),
            "add_one_and_refresh_ms": round(grow_ms, 1)}


# -- what a bank catches ----------------------------------------------------------------------


def bench_alterations() -> list[dict[str, Any]]:
    from icm.banks.hashing import hash_image, pdq_distance
    from icm.media import load_image

    rows = []
    for name, photo in _samples(PHOTOGRAPHS + OTHER_SAMPLES).items():
        original = hash_image(load_image("o.png", data=_png(photo)))
        row: dict[str, Any] = {"image": name, "photograph": name in PHOTOGRAPHS, "quality": original.quality[0]}
        for alteration, change in ALTERATIONS.items():
            altered = hash_image(load_image("a.png", data=_png(change(photo))), dihedral=alteration in DIHEDRAL)
            row[alteration] = pdq_distance(original.pdq[0], altered.pdq[0])
            if alteration in DIHEDRAL:
                # a dihedral bank compares the copy's eight dihedral hashes with the entry
                row[alteration + " (dihedral)"] = min(pdq_distance(original.pdq[0], h) for h in altered.dihedral[0])
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--recall-queries", type=int, default=400)
    parser.add_argument("--tx-max", type=int, default=100_000, help="largest size threatexchange's index runs at")
    parser.add_argument("--load-max", type=int, default=1_000_000)
    parser.add_argument("--policy", default="general")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-engine", action="store_true", help="no local-engine overhead run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                   f"load {os.getloadavg()[0]:.1f}",
    }
    if not args.skip_engine:
        report["hashing"] = bench_hashing(args.policy, args.rounds)
    report["lookups"] = [bench_lookups(size, args.queries, args.recall_queries, args.tx_max) for size in args.sizes]
    report["load"] = [bench_load(size) for size in args.sizes if size <= args.load_max]
    report["alterations"] = bench_alterations()
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"machine: {report['machine']}")
    if "hashing" in report:
        print("hashing:", json.dumps(report["hashing"]))
    for row in report["lookups"]:
        print("lookups:", json.dumps(row))
    for row in report["load"]:
        print("load:", json.dumps(row))
    for row in report["alterations"]:
        print("alterations:", json.dumps(row))


if __name__ == "__main__":
    main()
