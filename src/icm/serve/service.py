"""What one running service holds (settings, store, policies, judging, limits, metrics) and the
request dependencies that reach it: the caller's key, scope and rate limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from icm.serve.auth import Caller, Scope, authenticate, require
from icm.serve.fetch import UrlFetcher
from icm.serve.inputs import decode_data_url
from icm.serve.judging import Judging
from icm.serve.limits import RateLimit
from icm.serve.metrics import Metrics
from icm.serve.policies import PolicyCatalog
from icm.serve.settings import ServeSettings
from icm.serve.store.database import Store


@dataclass
class Service:
    settings: ServeSettings
    store: Store
    catalog: PolicyCatalog
    judging: Judging
    rate_limit: RateLimit
    metrics: Metrics

    fetcher: UrlFetcher

    async def image(self, url: str) -> tuple[bytes, str]:
        """(bytes, name) of an image a request gives as a data URL or an allowed URL, within this
        service's limits."""
        if url.startswith("data:"):
            return await run_in_threadpool(decode_data_url, url, self.settings.max_body_bytes), "<data-url>"
        return await self.fetcher.fetch(url), url


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def authorized(scope: Scope | None = None) -> Callable[[Request], Awaitable[Caller]]:
    """A dependency: the caller's key (401), its scope (403) and its rate limit (429)."""

    async def caller(request: Request) -> Caller:
        service = service_of(request)
        who = await run_in_threadpool(authenticate, service.store, request.headers.get("authorization"))
        if scope is not None:
            require(who, scope)
        service.rate_limit.hit(who.key_id)
        request.state.key_id = who.key_id
        return who

    return caller


def request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value is not None else None
