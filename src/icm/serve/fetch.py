"""Image URLs the service fetches itself, only from origins an operator allowed: https on port 443
for a listed host (``ICM_URL_HOSTS``: ``host``, or ``host:port`` for another port), plain http only
for a listed ``host:port`` (``ICM_URL_HTTP_HOSTS``). Fetches run on a bounded pool of their own
threads, not the pool the rest of the service shares, under one total deadline each (a server
that drips bytes is cut off at the deadline); every failure reads the same, so that the answer
tells a caller nothing about the host's ports or pages."""

from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import SplitResult, urlsplit

from icm.errors import IcmError
from icm.serve.bounds import is_int
from icm.serve.errors import PayloadTooLarge
from icm.serve.inputs import BadImageUrl, RemoteUrlRefused

log = logging.getLogger("icm.serve")

_CHUNK = 64 * 1024


def parse_origin(entry: str, *, default_port: int | None) -> tuple[str, int]:
    """``host`` / ``host:port`` / ``[v6]:port`` as (host, port); ``default_port`` None: the port is
    required. Raises ValueError for anything else (a scheme, a path, a bad port)."""
    parts = urlsplit("//" + entry.strip())
    if not parts.hostname or parts.path or parts.query or parts.fragment or parts.username is not None:
        raise ValueError(f"{entry!r} is not HOST or HOST:PORT")
    port = parts.port  # ValueError when out of range or not a number
    if port is None:
        if default_port is None:
            raise ValueError(f"{entry!r} names no port: write HOST:PORT")
        port = default_port
    return parts.hostname, port


class _FetchFailed(IcmError):
    """Why a fetch failed, for the log; the caller only ever sees the one worded failure."""


class _Connection:
    """The connection of one fetch, which the waiting side can cut off at the deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.aborted = False

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            if self.aborted:
                raise _FetchFailed("the deadline passed during the connect")
            self.sock = sock

    def abort(self) -> None:
        """Wake a read blocked on the socket (it fails at once) and stop the fetch."""
        with self._lock:
            self.aborted = True
            sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class UrlFetcher:
    """Fetches allowed image URLs: ``await fetcher.fetch(url)`` gives the bytes, or raises
    RemoteUrlRefused (origin not allowed), BadImageUrl (any failure) or PayloadTooLarge."""

    def __init__(
        self, https_hosts: list[str], http_hosts: list[str], *, max_bytes: int, timeout: float, workers: int
    ) -> None:
        self._https = {parse_origin(entry, default_port=443) for entry in https_hosts}
        self._http = {parse_origin(entry, default_port=None) for entry in http_hosts}
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="icm-url-fetch")
        self._tls = ssl.create_default_context()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def check(self, url: str) -> SplitResult:
        """The parts of an URL this service may fetch (else RemoteUrlRefused or BadImageUrl)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise BadImageUrl("the image URL is malformed") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadImageUrl("an image URL is a data URL (data:image/...;base64,...) or an https URL")
        origin = (parts.hostname, port or (443 if parts.scheme == "https" else 80))
        if origin not in (self._https if parts.scheme == "https" else self._http):
            raise RemoteUrlRefused(
                f"this service does not fetch images from {parts.scheme}://{parts.netloc}: send the image "
                "as a data URL or an upload (an operator may allow https hosts with ICM_URL_HOSTS)"
            )
        return parts

    async def fetch(self, url: str) -> bytes:
        parts = self.check(url)
        deadline = time.monotonic() + self.timeout
        connection = _Connection()
        future = asyncio.get_running_loop().run_in_executor(self._pool, self._get, parts, deadline, connection)
        try:
            return await asyncio.wait_for(future, self.timeout)
        except asyncio.CancelledError:  # the client went away
            connection.abort()
            raise
        except TimeoutError:
            connection.abort()
            log.info("image URL not fetched: the deadline of %g s passed", self.timeout, extra={"url": url})
        except _FetchFailed as exc:
            log.info("image URL not fetched: %s", exc, extra={"url": url})
        raise BadImageUrl(
            f"cannot fetch the image at {url}: no complete answer with status 200 within {self.timeout:g} s"
        )

    def _get(self, parts: SplitResult, deadline: float, handle: _Connection) -> bytes:
        """One GET, in a thread of the pool; no redirects (a 3xx is a failure like any other)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise _FetchFailed("the deadline passed while the fetch waited for a thread")
        assert parts.hostname is not None
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=left, context=self._tls)
        else:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=left)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            connection.connect()
            # the socket itself: the connection lets go of it when the answer says it closes
            sock = connection.sock
            assert sock is not None
            handle.attach(sock)
            connection.request("GET", target, headers={"User-Agent": "icm-serve", "Accept": "image/*"})
            response = connection.getresponse()
            if response.status != 200:
                raise _FetchFailed(f"status {response.status}")
            declared = response.getheader("content-length") or ""
            if is_int(declared) and int(declared) > self.max_bytes:
                raise PayloadTooLarge(self._too_large(parts))
            chunks: list[bytes] = []
            size = 0
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or handle.aborted:
                    raise _FetchFailed("the deadline passed during the read")
                sock.settimeout(left)
                chunk = response.read1(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_bytes:
                    raise PayloadTooLarge(self._too_large(parts))
                chunks.append(chunk)
            return b"".join(chunks)
        except PayloadTooLarge:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise _FetchFailed(f"{type(exc).__name__}: {exc}") from None
        finally:
            connection.close()

    def _too_large(self, parts: SplitResult) -> str:
        return f"the image at {parts.geturl()} is larger than the limit of {self.max_bytes:,} bytes"
