"""Throughput and latency of ``icm serve`` over HTTP against in-process Moderator calls.

    python benchmarks/serve.py --images 40 --concurrency 4 [--policy examples/policies/nudity-fast.yaml]
    python benchmarks/serve.py --batching --images 32 --concurrency 8     # the tiny VLM, batched or not

Both figures come from the same process, on the same images, with the same loaded backend:
  in-process  Moderator.moderate(bytes) from a pool of ``--concurrency`` threads;
  http        POST /v1/moderate (multipart upload, fresh=true so nothing comes from the cache) at
              ``--concurrency`` requests in flight, against a uvicorn server on loopback with
              ``--concurrency`` judging workers and a SQLite store: upload, auth, rate limiting,
              admission, judging, storing the result and the answer.
The two alternate, round after round, so that load from other processes weighs on both alike.
Target: http >= 0.9x in-process throughput with the local backend.

With ``--batching`` the two servers compared both run the tiny test VLM (transformers backend,
``--hidden``/``--image-size``, scoring only) with one judging worker: one judges each request
alone (``batch_size=1``), the other judges the requests that arrive together in one backend call
(``batch_size=--concurrency``). The figure is the batched server's throughput over the other's.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
from PIL import Image
from report import machine

SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "retina", "immunohistochemistry")


def make_images(count: int) -> list[bytes]:
    """Distinct JPEGs: scikit-image's sample photos, each crop a little different."""
    from skimage import data

    photos = [Image.fromarray(getattr(data, name)()).convert("RGB") for name in SAMPLES]
    images = []
    for i in range(count):
        photo = photos[i % len(photos)]
        crop = photo.crop((i % 7, i % 5, photo.width - i % 3, photo.height - i % 4))
        buffer = io.BytesIO()
        crop.save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def summary(seconds: float, latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

    return {"img_per_s": round(len(latencies) / seconds, 2), "p50_ms": pct(0.5), "p95_ms": pct(0.95),
            "p99_ms": pct(0.99)}


def in_process(moderator, images: list[bytes], concurrency: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    def one(index: int) -> float:
        started = time.perf_counter()
        result = moderator.moderate(images[index], f"{index}.jpg")
        assert result.error is None, result.error
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(len(images))))
    return summary(time.perf_counter() - started, latencies)


async def _http(url: str, key: str, images: list[bytes], concurrency: int, policy: str) -> tuple[float, list[float]]:
    gate = asyncio.Semaphore(concurrency)
    async with httpx2.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as client:

        async def one(index: int) -> float:
            async with gate:
                started = time.perf_counter()
                answer = await client.post(
                    "/v1/moderate", files={"image": (f"{index}.jpg", images[index], "image/jpeg")},
                    data={"policy": policy, "fresh": "true"},
                )
                assert answer.status_code == 200, answer.text
                return time.perf_counter() - started

        started = time.perf_counter()
        latencies = await asyncio.gather(*(one(i) for i in range(len(images))))
        return time.perf_counter() - started, list(latencies)


def http(url: str, key: str, images: list[bytes], concurrency: int, policy: str) -> dict[str, float]:
    seconds, latencies = asyncio.run(_http(url, key, images, concurrency, policy))
    return summary(seconds, latencies)


def start_server(policy: str, backend, concurrency: int, folder: Path, **settings: object) -> tuple[str, str, object]:  # type: ignore[no-untyped-def]
    import uvicorn

    from icm.serve.app import create_app
    from icm.serve.auth import create_key
    from icm.serve.settings import ServeSettings
    from icm.serve.store import Store, migrate

    db = f"sqlite:///{folder / f'bench-{time.monotonic_ns()}.db'}"
    migrate(db)
    store = Store(db)
    key = create_key(store, "benchmark", ["moderate"])[1]
    store.close()
    values = {"policies": [policy], "db": db, "workers": concurrency, "queue_size": 1024, "rate_limit": None,
              "keep_images": "none", "request_timeout": 600, **settings}
    app = create_app(ServeSettings(**values), backend=backend)  # type: ignore[arg-type]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    while True:
        try:
            if httpx2.get(url + "/readyz").status_code == 200:
                return url, key, server
        except httpx2.TransportError:
            pass
        time.sleep(0.1)


def batching(args: argparse.Namespace) -> None:
    """The tiny VLM behind two servers, batched and not, on the same images, round after round."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))  # the tiny model builder the tests use
    from backends.tiny_vlm import save_tiny_llava

    from icm.backends.transformers import TransformersBackend

    images = make_images(args.images)
    with tempfile.TemporaryDirectory() as folder:
        model = save_tiny_llava(Path(folder) / "tiny-llava", hidden=args.hidden, image_size=args.image_size)
        backend = TransformersBackend(str(model), explain="none", image_batch=args.concurrency)
        servers = {
            name: start_server("icm-r1", backend, 1, Path(folder), batch_size=size, batch_wait_ms=args.batch_wait_ms)
            for name, size in (("one_by_one", 1), ("batched", args.concurrency))
        }
        for url, key, _ in servers.values():
            http(url, key, images[:2], 1, "icm-r1")  # warm-up
        rows = []
        for round_ in range(args.rounds):
            row: dict[str, object] = {"round": round_ + 1}
            for name, (url, key, _) in servers.items():
                row[name] = http(url, key, images, args.concurrency, "icm-r1")
            row["gain"] = round(row["batched"]["img_per_s"] / row["one_by_one"]["img_per_s"], 3)  # type: ignore[index]
            rows.append(row)
            print(json.dumps(row), flush=True)
        for _, _, server in servers.values():
            server.should_exit = True  # type: ignore[attr-defined]
    mean = {name: round(statistics.mean(r[name]["img_per_s"] for r in rows), 2)  # type: ignore[index]
            for name in ("one_by_one", "batched")}
    print(json.dumps({"machine": machine(), "images": args.images, "rounds": args.rounds,
                      "concurrency": args.concurrency, "hidden": args.hidden, "image_size": args.image_size,
                      "one_by_one_img_per_s": mean["one_by_one"], "batched_img_per_s": mean["batched"],
                      "gain": round(mean["batched"] / mean["one_by_one"], 3)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--policy", default=str(Path(__file__).parents[1] / "examples/policies/nudity-fast.yaml"))
    parser.add_argument("--batching", action="store_true", help="batched vs one-by-one judging with the tiny VLM")
    parser.add_argument("--hidden", type=int, default=64, help="--batching: the tiny VLM's hidden size")
    parser.add_argument("--image-size", type=int, default=24, help="--batching: pixels; (size/2)^2 image tokens")
    parser.add_argument("--batch-wait-ms", type=float, default=20.0, help="--batching: the batched server's wait")
    args = parser.parse_args()
    if args.batching:
        batching(args)
        return

    from icm import Moderator, load_policy
    from icm.backends.local.engine import LocalBackend

    policy = load_policy(args.policy)
    backend = LocalBackend()
    moderator = Moderator(policy, backend=backend)
    images = make_images(args.images)
    moderator.moderate(images[0], "warm-up.jpg")
    with tempfile.TemporaryDirectory() as folder:
        url, key, server = start_server(args.policy, backend, args.concurrency, Path(folder))
        http(url, key, images[:2], 1, policy.id)  # warm-up
        rows = []
        for round_ in range(args.rounds):
            local = in_process(moderator, images, args.concurrency)
            remote = http(url, key, images, args.concurrency, policy.id)
            rows.append({"round": round_ + 1, "in_process": local, "http": remote,
                         "ratio": round(remote["img_per_s"] / local["img_per_s"], 3)})
            print(json.dumps(rows[-1]), flush=True)
        server.should_exit = True  # type: ignore[attr-defined]
    totals = {
        "machine": machine(),
        "images": args.images, "rounds": args.rounds, "concurrency": args.concurrency, "policy": policy.id,
        "in_process_img_per_s": round(statistics.mean(r["in_process"]["img_per_s"] for r in rows), 2),
        "http_img_per_s": round(statistics.mean(r["http"]["img_per_s"] for r in rows), 2),
    }
    totals["ratio"] = round(totals["http_img_per_s"] / totals["in_process_img_per_s"], 3)
    print(json.dumps(totals))


if __name__ == "__main__":
    sys.exit(main())
