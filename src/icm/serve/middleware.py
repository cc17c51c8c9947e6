"""One ASGI middleware around every request: a request id, the body-size cap (413 before the body
is parsed), an access log line (worded by serve.logs), and the request metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from icm.serve.bounds import is_int
from icm.serve.errors import PayloadTooLarge
from icm.serve.logs import REQUEST_ID
from icm.serve.metrics import Metrics

_SAFE_ID = re.compile(r"^[\w.:-]{1,64}$")
access_log = logging.getLogger("icm.serve.access")


class ServiceMiddleware:
    """``error_response(IcmError, request_id)`` answers an error; ``unexpected_response(scope,
    exception, request_id)`` answers an exception that nothing else handled (a 500)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics, error_response: Any,
                 unexpected_response: Any) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.error_response = error_response
        self.unexpected_response = unexpected_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id", "")
        rid = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        token = REQUEST_ID.set(rid)
        started = time.perf_counter()
        status = 500
        status_sent = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, status_sent
            if message["type"] == "http.response.start":
                status = message["status"]
                status_sent = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            body_receive = await self._bounded_body(scope, receive, headers)
            if body_receive is None:
                response = self.error_response(
                    PayloadTooLarge(f"the request body is larger than the limit of {self.max_body_bytes:,} bytes"),
                    rid,
                )
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, body_receive, send_with_id)
        except Exception as exc:
            # a bug: answered here, with the request id and without raising further, so that the
            # server keeps the client's connection (uvicorn closes it on an exception it sees)
            if status_sent:
                raise
            await self.unexpected_response(scope, exc, rid)(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(seconds)
            access_log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                    "key_id": scope.get("state", {}).get("key_id"),
                    "request_id": rid,
                },
            )
            REQUEST_ID.reset(token)

    async def _bounded_body(self, scope: Scope, receive: Receive, headers: dict[str, str]) -> Receive | None:
        """A receive that replays the body, read whole up to the cap; None when it is over."""
        declared = headers.get("content-length")
        if declared is not None and is_int(declared) and int(declared) > self.max_body_bytes:
            return None
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return receive
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay
