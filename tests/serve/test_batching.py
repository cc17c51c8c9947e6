"""Requests that arrive together are judged together: the Batcher on its own, and a live server
over the tiny VLM whose batched answers equal judging each image alone."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from serve.live import LiveServer, burst, png_bytes, settings_for

from icm.media import load_image
from icm.policy.load import load_policy
from icm.serve.batching import Batcher


def _batches(jobs: list[tuple[str, int]], size: int, wait: float, fail: bool = False) -> tuple[list, list]:
    """Submit (key, job) pairs at once on an event loop; the batches run saw, and each job's outcome."""
    seen: list[list[int]] = []
    lock = threading.Lock()

    def run(batch: list[int]) -> list[int]:
        with lock:
            seen.append(list(batch))
        if fail:
            raise RuntimeError("the model broke")
        return [job * 10 for job in batch]

    async def main() -> list[object]:
        with ThreadPoolExecutor(2) as pool:
            batcher: Batcher[int, int] = Batcher(run, pool, size, wait)
            futures: list[Future[int]] = [batcher.submit(key, job) for key, job in jobs]
            outcomes: list[object] = []
            for future in futures:
                try:
                    outcomes.append(await asyncio.wrap_future(future))
                except RuntimeError as exc:
                    outcomes.append(str(exc))
            return outcomes

    outcomes = asyncio.run(main())
    return sorted(seen), outcomes


def test_jobs_of_one_key_share_batches_up_to_the_size() -> None:
    seen, outcomes = _batches([("a", 1), ("a", 2), ("b", 3), ("a", 4), ("a", 5), ("b", 6)], size=3, wait=0.05)
    assert seen == [[1, 2, 4], [3, 6], [5]]  # "a" fills one batch at 3; the rest go when the wait ends
    assert outcomes == [10, 20, 30, 40, 50, 60]  # each job gets its own result


def test_size_one_never_waits_and_a_failed_batch_fails_each_of_its_jobs() -> None:
    seen, _ = _batches([("a", 1), ("a", 2)], size=1, wait=60)  # would hang for a minute if it waited
    assert seen == [[1], [2]]
    _, outcomes = _batches([("a", 1), ("a", 2)], size=2, wait=0.01, fail=True)
    assert outcomes == ["the model broke", "the model broke"]


def test_a_cancelled_job_leaves_its_batch_and_a_running_one_cannot_be_cancelled() -> None:
    go = threading.Event()
    seen: list[list[int]] = []

    def run(batch: list[int]) -> list[int]:
        seen.append(list(batch))
        go.wait(30)
        return [job * 10 for job in batch]

    async def main() -> tuple[bool, list[object]]:
        with ThreadPoolExecutor(1) as pool:
            batcher: Batcher[int, int] = Batcher(run, pool, 2, 60)
            running = [batcher.submit("a", 1), batcher.submit("a", 2)]  # holds the only worker
            waiting = [batcher.submit("a", 3), batcher.submit("a", 4)]  # queued behind it
            await asyncio.sleep(0.2)
            refused = running[0].cancel()  # already running: it ends when its work does
            assert waiting[0].cancel()
            go.set()
            return refused, [await asyncio.wrap_future(f) for f in [*running, waiting[1]]]

    refused, outcomes = asyncio.run(main())
    assert refused is False
    assert outcomes == [10, 20, 40]
    assert seen == [[1, 2], [4]]  # the cancelled job was not judged


def test_concurrent_requests_are_judged_in_one_batch_with_the_same_answers(
    tiny_llava_dir: Path, sqlite_url: str, tmp_path: Path
) -> None:
    options = tmp_path / "backend.yaml"
    options.write_text("explain: none\nimage_batch: 4\n")  # several images per forward (on the CPU too)
    settings = settings_for(
        sqlite_url, tmp_path, policies=["icm-r1"], backend=f"transformers:{tiny_llava_dir}", backend_options=options,
        workers=1, batch_wait_ms=300,
    )
    server = LiveServer(settings).start()
    try:
        answers = asyncio.run(burst(server.url, server.key("moderate"), 4, policy="icm-r1"))
        assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
        metrics = server.client().get("/metrics").text
    finally:
        server.stop()
    count = float(next(line.split()[1] for line in metrics.splitlines() if line.startswith("icm_batch_size_count")))
    assert count < 4  # fewer backend calls than requests: some arrived together

    from icm.backends.transformers import TransformersBackend

    alone = TransformersBackend(str(tiny_llava_dir), explain="none")
    policy = load_policy("icm-r1")
    for i, answer in enumerate(answers):
        image = tmp_path / f"{i}.png"
        image.write_bytes(png_bytes(100 + i))
        expected = [v.probability for v in alone.judge(load_image(image), policy)]
        assert [v["probability"] for v in answer.json()["verdicts"]] == pytest.approx(expected, abs=1e-4)
