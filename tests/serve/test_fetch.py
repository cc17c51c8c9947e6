"""Image URLs of allowed origins against a live server and servers on loopback that the tests
start: only the listed scheme and port is fetched, every failure reads the same, a fetch has one
total deadline, and slow fetches do not hold the threads other requests need."""

from __future__ import annotations

import asyncio
import functools
import http.server
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import httpx2
import pytest
from serve.live import png_bytes


class _Files(http.server.SimpleHTTPRequestHandler):
    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


class _Drip(http.server.BaseHTTPRequestHandler):
    """Headers at once, then one byte a second: each read comes well within any per-read timeout."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(30):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(1)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def _start(server: socketserver.BaseServer) -> None:
    threading.Thread(target=server.serve_forever, daemon=True).start()


@pytest.fixture
def files(tmp_path) -> Iterator[tuple[int, list[str]]]:
    """A loopback file server with small.png: its port and the paths it was asked for."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "small.png").write_bytes(png_bytes(5))
    seen: list[str] = []
    handler = type("Files", (_Files,), {"seen": seen})
    server = _Server(("127.0.0.1", 0), functools.partial(handler, directory=str(tmp_path / "www")))
    _start(server)
    yield server.server_address[1], seen
    server.shutdown()


@pytest.fixture
def drip() -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), _Drip)
    _start(server)
    yield server.server_address[1]
    server.shutdown()


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_an_allowed_host_is_fetched_over_https_on_its_listed_port_only(serve, sqlite_url, files) -> None:
    port, seen = files
    server = serve(sqlite_url, url_hosts=["127.0.0.1"])  # https on port 443, nothing else
    with server.client("moderate") as client:
        for url in (f"http://127.0.0.1:{port}/small.png", f"https://127.0.0.1:{port}/small.png",
                    "http://127.0.0.1/small.png"):
            answer = client.post("/v1/moderate", json={"image": url, "policy": "fast"})
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"]["code"] == "remote_url_refused"
    assert seen == []  # refused before any connection
    # plain http needs the host:port listed as such, deliberately
    server = serve(sqlite_url, url_http_hosts=[f"127.0.0.1:{port}"])
    with server.client("moderate") as client:
        answer = client.post("/v1/moderate", json={"image": f"http://127.0.0.1:{port}/small.png", "policy": "fast"})
        assert answer.status_code == 200, answer.text
        refused = client.post("/v1/moderate", json={"image": f"https://127.0.0.1:{port}/small.png"})
        assert refused.json()["error"]["code"] == "remote_url_refused"
    assert seen == ["/small.png"]


def test_every_fetch_failure_reads_the_same(serve, sqlite_url, files) -> None:
    """A closed port, a missing page, a server that speaks no HTTP and a TLS handshake with a plain
    server: one status, one code, one message (but for the URL), so no answer maps ports."""
    port, _ = files
    closed = _closed_port()
    mute = socket.socket()  # accepts and answers garbage
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)
    mute_port = mute.getsockname()[1]

    def babble() -> None:
        while True:
            try:
                conn, _ = mute.accept()
            except OSError:
                return
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
            conn.close()

    threading.Thread(target=babble, daemon=True).start()
    try:
        server = serve(sqlite_url, url_hosts=[f"127.0.0.1:{port}"],
                       url_http_hosts=[f"127.0.0.1:{port}", f"127.0.0.1:{closed}", f"127.0.0.1:{mute_port}"])
        urls = [f"http://127.0.0.1:{closed}/a.png", f"http://127.0.0.1:{port}/missing.png",
                f"http://127.0.0.1:{mute_port}/a.png", f"https://127.0.0.1:{port}/small.png"]
        messages = set()
        with server.client("moderate") as client:
            for url in urls:
                answer = client.post("/v1/moderate", json={"image": url, "policy": "fast"})
                assert answer.status_code == 400, answer.text
                error = answer.json()["error"]
                assert error["code"] == "bad_image_url"
                messages.add(error["message"].replace(url, "URL"))
        assert len(messages) == 1, messages
        assert "Errno" not in messages.pop()
    finally:
        mute.close()


def test_a_fetch_has_one_total_deadline(serve, sqlite_url, drip) -> None:
    server = serve(sqlite_url, url_http_hosts=[f"127.0.0.1:{drip}"], url_timeout=1.5)
    with server.client("moderate") as client:
        started = time.monotonic()
        answer = client.post("/v1/moderate", json={"image": f"http://127.0.0.1:{drip}/a.png", "policy": "fast"})
        took = time.monotonic() - started
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "bad_image_url"
    assert took < 4, f"a 1.5 s deadline answered after {took:.1f} s"


def test_slow_fetches_do_not_hold_up_other_requests(serve, sqlite_url, drip) -> None:
    """45 dripping fetches at once; another key's GET /v1/policies answers at its usual speed."""
    server = serve(sqlite_url, url_http_hosts=[f"127.0.0.1:{drip}"], url_timeout=3)
    slow_key, other_key = server.key("moderate"), server.key("review")

    async def storm() -> tuple[list[httpx2.Response], float]:
        async with httpx2.AsyncClient(base_url=server.url, timeout=120) as client:
            slow = [asyncio.create_task(client.post(
                "/v1/moderate", json={"image": f"http://127.0.0.1:{drip}/{i}.png", "policy": "fast"},
                headers={"Authorization": f"Bearer {slow_key}"})) for i in range(45)]
            await asyncio.sleep(1)  # every fetch has started or waits for a fetcher
            started = time.monotonic()
            listed = await client.get("/v1/policies", headers={"Authorization": f"Bearer {other_key}"})
            took = time.monotonic() - started
            assert listed.status_code == 200, listed.text
            return list(await asyncio.gather(*slow)), took

    started = time.monotonic()
    answers, took = asyncio.run(storm())
    assert took < 1.5, f"GET /v1/policies took {took:.1f} s behind 45 slow fetches"
    assert {a.status_code for a in answers} == {400}
    assert {a.json()["error"]["code"] for a in answers} == {"bad_image_url"}
    assert time.monotonic() - started < 10  # each cut off at its deadline, waiting included
