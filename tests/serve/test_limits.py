"""Limits and operations against a live server: request timeout (504, record stored), the
bounded queue (503 + Retry-After), per-key rate limits (429 + Retry-After), metrics, request ids
and JSON logs."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx2
from serve.live import burst, data_url, png_bytes


def test_a_request_over_the_timeout_gets_504_and_an_error_record(serve, sqlite_url) -> None:
    server = serve(sqlite_url, request_timeout=0.001)
    with server.client("moderate") as client:
        answer = client.post("/v1/moderate", json={"image": data_url(png_bytes(1)), "policy": "general"})
        assert answer.status_code == 504, answer.text
        error = answer.json()["error"]
        assert error["code"] == "timeout" and error["type"] == "model_error"
        record = client.get(f"/v1/results/{error['result_id']}").json()
        assert record["error"]["code"] == "timeout"
        assert record["decision"] == "review"  # never allow what was not judged
        # an error is never served from the cache: the same image is judged again
        again = client.post("/v1/moderate", json={"image": data_url(png_bytes(1)), "policy": "general"})
        assert again.status_code == 504
        assert again.json()["error"]["result_id"] != error["result_id"]


def test_a_full_queue_answers_503_at_once(serve, sqlite_url) -> None:
    server = serve(sqlite_url, workers=1, queue_size=1, retry_after=3)
    answers = asyncio.run(burst(server.url, server.key("moderate"), 12, policy="general"))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 2  # the worker's and the queue's
    busy = [a for a in answers if a.status_code == 503]
    assert busy, statuses
    assert all(a.headers["retry-after"] == "3" and a.json()["error"]["code"] == "overloaded" for a in busy)
    with server.client("review") as reviewer:
        stored = reviewer.get("/v1/results", params={"limit": 500}).json()["data"]
    assert sorted(r["id"] for r in stored) == sorted(a.json()["id"] for a in answers if a.status_code == 200)
    metrics = httpx2.get(server.url + "/metrics").text
    assert 'icm_errors_total{code="overloaded"}' in metrics
    assert "icm_queue_depth 0.0" in metrics  # everything finished


def test_rate_limit_per_key(serve, sqlite_url) -> None:
    server = serve(sqlite_url, rate_limit="3/minute")
    with server.client("moderate") as client, server.client("review") as other:
        assert [client.get("/v1/policies").status_code for _ in range(3)] == [200, 200, 200]
        limited = client.get("/v1/policies")
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert other.get("/v1/policies").status_code == 200  # another key has its own budget


def test_metrics_request_ids_and_openapi(serve, sqlite_url) -> None:
    server = serve(sqlite_url)
    assert httpx2.get(server.url + "/docs").status_code == 200
    paths = httpx2.get(server.url + "/openapi.json").json()["paths"]
    assert {"/v1/moderate", "/v1/moderations", "/v1/decisions", "/v1/results/{result_id}"} <= set(paths)
    with server.client("moderate") as client:
        image = {"image": data_url(png_bytes(7)), "policy": "fast"}
        first = client.post("/v1/moderate", json=image, headers={"X-Request-ID": "upload-42"})
        assert first.headers["x-request-id"] == "upload-42"
        client.post("/v1/moderate", json=image)
        assert client.post("/v1/moderate", json={"image": "nope"}).status_code == 400
    text = httpx2.get(server.url + "/metrics").text
    assert 'icm_requests_total{endpoint="/v1/moderate",method="POST",status="200"} 2.0' in text
    assert 'icm_requests_total{endpoint="/v1/moderate",method="POST",status="400"} 1.0' in text
    assert 'icm_request_seconds_count{endpoint="/v1/moderate"} 3.0' in text
    assert "icm_cache_hits_total 1.0" in text
    decision = first.json()["decision"]
    assert f'icm_decisions_total{{decision="{decision}",policy="fast"}} 1.0' in text
    assert 'icm_errors_total{code="bad_image_url"} 1.0' in text


def test_logs_are_json_lines_with_the_request_id(serve, sqlite_url, caplog) -> None:
    from icm.serve.logs import JsonFormatter

    server = serve(sqlite_url)
    with caplog.at_level(logging.INFO, logger="icm.serve.access"):
        httpx2.get(server.url + "/healthz", headers={"X-Request-ID": "probe-1"})
        deadline = time.monotonic() + 10  # the line is written just after the answer is sent
        # other requests (the fixture's readiness probes) log lines too: the probe's is the one with its id
        while not (lines := [line for r in caplog.records if r.name == "icm.serve.access"
                             if (line := json.loads(JsonFormatter().format(r)))["request_id"] == "probe-1"]):
            assert time.monotonic() < deadline, "no access log line with the request's id"
            time.sleep(0.01)
    line = lines[-1]
    assert line["path"] == "/healthz" and line["status"] == 200 and line["message"] == "request"


class _FailingBackend:
    """The embedded engine, except that its batch call raises instead of giving each image its error."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def judge_batch(self, images: object, policy: object) -> list[object]:
        raise RuntimeError("the model broke")


def test_a_failed_batch_gets_502_and_an_error_record(local_backend, sqlite_url, tmp_path) -> None:
    from serve.live import LiveServer, settings_for

    server = LiveServer(settings_for(sqlite_url, tmp_path), backend=_FailingBackend(local_backend)).start()
    try:
        with server.client("moderate") as client:
            answer = client.post("/v1/moderate", json={"image": data_url(png_bytes(1)), "policy": "fast"})
            assert answer.status_code == 502, answer.text
            error = answer.json()["error"]
            assert error["code"] == "model_error" and "the model broke" in error["message"]
            record = client.get(f"/v1/results/{error['result_id']}").json()
            assert record["error"]["code"] == "backend_error"
            assert record["sha256"] is not None
            assert record["decision"] == "review"  # never allow what was not judged
    finally:
        server.stop()


def test_an_unexpected_error_answers_with_its_request_id(serve, sqlite_url) -> None:
    from sqlalchemy import create_engine, text

    server = serve(sqlite_url)
    engine = create_engine(sqlite_url)
    with engine.begin() as connection:  # the store breaks under the running service
        connection.execute(text("ALTER TABLE results RENAME TO results_gone"))
    engine.dispose()
    with server.client("moderate") as client:
        answer = client.get("/v1/results/res_x", headers={"X-Request-ID": "broken-1"})
    assert answer.status_code == 500, answer.text
    error = answer.json()["error"]
    assert error["code"] == "internal" and "Traceback" not in answer.text
    assert error["request_id"] == "broken-1"  # the id the log line of the failure carries


def test_a_500_carries_its_request_id_and_keeps_the_connection(serve, sqlite_url) -> None:
    """An unexpected error answers like any other: the X-Request-ID header, and the client's
    keep-alive connection goes on serving the next request (one socket, reused)."""
    import http.client
    from urllib.parse import urlsplit

    from sqlalchemy import create_engine, text

    server = serve(sqlite_url)
    key = server.key("moderate")
    engine = create_engine(sqlite_url)
    with engine.begin() as connection:  # the store breaks under the running service
        connection.execute(text("ALTER TABLE results RENAME TO results_gone"))
    engine.dispose()
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request("GET", "/v1/results/res_x", headers={"Authorization": f"Bearer {key}",
                                                                "X-Request-ID": "broken-2"})
        answer = connection.getresponse()
        body = json.loads(answer.read())
        assert answer.status == 500
        assert answer.getheader("x-request-id") == "broken-2"
        assert body["error"]["request_id"] == "broken-2" and body["error"]["code"] == "internal"
        assert (answer.getheader("connection") or "").lower() != "close"
        sock = connection.sock
        assert sock is not None
        connection.request("GET", "/healthz")
        again = connection.getresponse()
        assert again.status == 200 and json.loads(again.read()) == {"status": "ok"}
        assert connection.sock is sock, "the server closed the connection after the 500"
    finally:
        connection.close()


class _HeldBackend:
    """The embedded engine, except that each batch call waits until the test lets it go: a worker
    that is busy for as long as the test wants."""

    def __init__(self, inner: object) -> None:
        import threading

        self._inner = inner
        self.go = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def judge_batch(self, images: object, policy: object) -> list[object]:
        assert self.go.wait(120), "the test never let the worker go"
        return self._inner.judge_batch(images, policy)  # type: ignore[attr-defined]


def test_a_timed_out_request_keeps_its_place_until_its_work_ends(local_backend, sqlite_url, tmp_path) -> None:
    from serve.live import LiveServer, settings_for

    backend = _HeldBackend(local_backend)
    settings = settings_for(sqlite_url, tmp_path, workers=1, queue_size=0, batch_size=1, request_timeout=1,
                            retry_after=2)
    server = LiveServer(settings, backend=backend).start()
    try:
        with server.client("moderate") as client:
            first = client.post("/v1/moderate", json={"image": data_url(png_bytes(1)), "policy": "fast"})
            assert first.status_code == 504, first.text  # the worker still holds its image
            busy = client.post("/v1/moderate", json={"image": data_url(png_bytes(2)), "policy": "fast"})
            assert busy.status_code == 503, busy.text  # not admitted to wait for a worker that is not free
            assert busy.json()["error"]["code"] == "overloaded" and busy.headers["retry-after"] == "2"
            backend.go.set()
            deadline = time.monotonic() + 30
            while (after := client.post("/v1/moderate", json={"image": data_url(png_bytes(2)), "policy": "fast"})
                   ).status_code == 503:
                assert time.monotonic() < deadline, "the place was never given back"
                time.sleep(0.1)
            assert after.status_code == 200, after.text
        assert "icm_in_flight 0.0" in httpx2.get(server.url + "/metrics").text
    finally:
        backend.go.set()
        server.stop()


def test_the_other_jobs_of_a_batch_get_their_results_when_one_timed_out(local_backend, sqlite_url, tmp_path) -> None:
    from serve.live import LiveServer, settings_for

    backend = _HeldBackend(local_backend)
    # one batch of two: the first request waits for the second, then both for the held worker
    settings = settings_for(sqlite_url, tmp_path, workers=1, batch_size=2, batch_wait_ms=60_000, request_timeout=4)
    server = LiveServer(settings, backend=backend).start()

    async def main() -> tuple[httpx2.Response, httpx2.Response]:
        headers = {"Authorization": f"Bearer {server.key('moderate')}"}
        async with httpx2.AsyncClient(base_url=server.url, headers=headers, timeout=60) as client:
            def send(seed: int) -> asyncio.Task[httpx2.Response]:
                body = {"image": data_url(png_bytes(seed)), "policy": "fast"}
                return asyncio.create_task(client.post("/v1/moderate", json=body))

            early = send(1)
            await asyncio.sleep(2.5)
            late = send(2)  # fills the batch: it starts, and the worker is held
            timed_out = await early  # 4 s after it was sent
            backend.go.set()  # the batch ends well within the late request's 4 s
            return timed_out, await late

    try:
        timed_out, late = asyncio.run(main())
    finally:
        backend.go.set()
        server.stop()
    assert timed_out.status_code == 504, timed_out.text
    assert late.status_code == 200, late.text
    assert late.json()["verdicts"]
