"""What one running service holds (settings, stores, policies, judging, recording, limits,
metrics) and the request dependencies that reach it: the caller's key, scope and rate limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from icm.backends.base import Backend
from icm.policy.schema import Policy
from icm.serve.auth import Caller, Scope, authenticate, require
from icm.serve.fetch import UrlFetcher
from icm.serve.inputs import decode_data_url
from icm.serve.judging import Judging
from icm.serve.limits import RateLimit
from icm.serve.metrics import Metrics
from icm.serve.policies import PolicyCatalog
from icm.serve.recording import Recorder
from icm.serve.settings import ServeSettings
from icm.serve.store.database import Store
from icm.serve.store.images import ImageStore, image_store
from icm.serve.store.reviews import ReviewStore


@dataclass
class Service:
    settings: ServeSettings
    store: Store
    reviews: ReviewStore
    images: ImageStore | None  # where images a person may need to see are kept; None: nowhere
    catalog: PolicyCatalog
    judging: Judging
    recorder: Recorder
    rate_limit: RateLimit
    metrics: Metrics
    fetcher: UrlFetcher

    async def image(self, url: str) -> tuple[bytes, str]:
        """(bytes, name) of an image a request gives as a data URL or an allowed URL, within this
        service's limits."""
        if url.startswith("data:"):
            return await run_in_threadpool(decode_data_url, url, self.settings.max_body_bytes), "<data-url>"
        return await self.fetcher.fetch(url), url

    def close(self) -> None:
        """Finish the work in hand, then let go of the backend, the fetcher and the store."""
        self.judging.close()
        self.fetcher.close()
        self.store.close()


def open_service(settings: ServeSettings, metrics: Metrics, rate_limit: RateLimit,
                 backend: Backend | None = None) -> tuple[Service, list[Policy]]:
    """The service over a migrated database, its policies seeded (returned: the backend loads
    what they need, :meth:`Judging.load`, while the service already answers /healthz)."""
    store = Store(settings.db, retry_after=settings.retry_after)
    catalog = PolicyCatalog(store, default=settings.policies[0])
    seeded = catalog.seed(settings.policies)
    judging = Judging(settings, store, metrics, backend=backend)
    reviews = ReviewStore(store)
    images = image_store(settings, store)
    recorder = Recorder(reviews, images, judging.backend_key, sample=settings.review_sample,
                        double=settings.review_double)
    fetcher = UrlFetcher(settings.url_hosts, settings.url_http_hosts, max_bytes=settings.max_body_bytes,
                         timeout=settings.url_timeout, workers=settings.url_workers)
    service = Service(settings=settings, store=store, reviews=reviews, images=images, catalog=catalog,
                      judging=judging, recorder=recorder, rate_limit=rate_limit, metrics=metrics, fetcher=fetcher)
    return service, seeded


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
