"""A bounded load test on loopback: 500 requests at concurrency 32, each answered 200, 429 or 503,
and the store holds exactly the answered judgements, none lost and none twice."""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx2
from serve.live import data_url, png_bytes

REQUESTS = 500
CONCURRENCY = 32


async def _load(url: str, key: str, images: list[bytes]) -> list[tuple[int, dict[str, object], str]]:
    limits = httpx2.Limits(max_connections=CONCURRENCY)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as client:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(image: bytes) -> tuple[int, dict[str, object], str]:
            async with gate:
                answer = await client.post("/v1/moderate", json={"image": data_url(image), "policy": "fast"})
                return answer.status_code, answer.json(), answer.headers.get("retry-after", "")

        return list(await asyncio.gather(*(one(image) for image in images)))


def test_load_nothing_lost_or_duplicated(serve, db_url) -> None:
    # a small queue and a rate limit below the request count, so that all three answers occur
    server = serve(db_url, workers=2, queue_size=8, rate_limit="400/minute")
    images = [png_bytes(1000 + i, size=(32, 32)) for i in range(REQUESTS)]
    started = time.monotonic()
    answers = asyncio.run(_load(server.url, server.key("moderate"), images))
    assert time.monotonic() - started < 600
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 429, 503}, sorted(set(statuses))
    assert statuses.count(200) > 0 and statuses.count(429) >= REQUESTS - 400
    for status, body, retry_after in answers:
        if status != 200:
            assert body["error"]["code"] == {429: "rate_limited", 503: "overloaded"}[status]  # type: ignore[index]
            assert int(retry_after) >= 1
    judged = {str(body["id"]): image for (status, body, _), image in zip(answers, images, strict=True)
              if status == 200}
    assert len(judged) == statuses.count(200)  # every id once
    stored: list[dict[str, object]] = []
    with httpx2.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.key('review')}"}) as client:
        after = None
        while True:
            page = client.get("/v1/results", params={"limit": 200, **({"after": after} if after else {})}).json()
            stored += page["data"]
            after = page["next"]
            if after is None:
                break
    assert sorted(str(r["id"]) for r in stored) == sorted(judged)
    for record in stored:
        assert record["sha256"] == hashlib.sha256(judged[str(record["id"])]).hexdigest()
    assert httpx2.get(server.url + "/healthz").status_code == 200
