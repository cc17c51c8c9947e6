"""The app factory: ``create_app(settings)`` gives an ASGI app for uvicorn or any ASGI server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from icm import __version__
from icm.backends.base import Backend
from icm.errors import IcmError, InputError, ModelError, ModelOutputError
from icm.serve import openapi
from icm.serve.errors import NotReady
from icm.serve.limits import RateLimit
from icm.serve.metrics import Metrics
from icm.serve.middleware import ServiceMiddleware
from icm.serve.policies import split_ref
from icm.serve.protocol import ErrorBody, ErrorDetail
from icm.serve.review import pages as review_pages
from icm.serve.routes import appeals, decisions, health, hma, moderate, moderations, policies, results
from icm.serve.service import open_service, request_id
from icm.serve.settings import ServeSettings
from icm.serve.store.migrate import migrate

log = logging.getLogger("icm.serve")

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type"}


def create_app(settings: ServeSettings | None = None, *, backend: Backend | None = None) -> FastAPI:
    """The service as an ASGI app. ``backend`` replaces the one ``settings.backend`` names (an
    already loaded backend, shared by several apps in one process)."""
    settings = settings or ServeSettings()
    split_ref(settings.policies[0])  # a bad default fails here, not on the first request
    metrics = Metrics()
    rate_limit = RateLimit(settings.rate_limit, settings.rate_limit_storage)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await asyncio.to_thread(migrate, settings.db)
        service, seeded = await asyncio.to_thread(open_service, settings, metrics, rate_limit, backend)
        app.state.service = service
        loading = asyncio.create_task(asyncio.to_thread(service.judging.load, seeded))
        loading.add_done_callback(_report_loading)
        log.info(
            "serving", extra={"policies": settings.policies, "backend": settings.backend, "db": _safe_url(settings.db)}
        )
        try:
            yield
        finally:
            log.info("shutting down: finishing the requests in hand")
            await asyncio.to_thread(service.close)

    app = FastAPI(
        title="icm",
        version=__version__,
        summary="Rule-based, explainable image moderation: your written rules, a verdict, a "
        "probability, the evidence and a reason for every image.",
        lifespan=lifespan,
    )
    app.exception_handler(IcmError)(_icm_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(StarletteHTTPException)(_http_error)
    for router in (moderate.router, results.router, policies.router, moderations.router, decisions.router,
                   appeals.router, health.router, hma.router):
        app.include_router(router)
    review_pages.install(app)
    openapi.install(app)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type", "X-Request-ID"])
    app.add_middleware(
        ServiceMiddleware, max_body_bytes=settings.max_body_bytes, metrics=metrics, error_response=error_response,
        unexpected_response=_unexpected_error,
    )
    return app


def error_response(exc: IcmError, request_id: str | None) -> JSONResponse:
    """The one shape of every error answer: status and code come from the error's class."""
    body = ErrorBody(
        error=ErrorDetail(
            code=str(exc.code),
            message=str(exc),
            type=_branch(exc),
            request_id=request_id,
            result_id=getattr(exc, "result_id", None),
        )
    )
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(body.model_dump(mode="json"), status_code=exc.http_status, headers=headers)


def _branch(exc: IcmError) -> str:
    if isinstance(exc, InputError):
        return "input_error"
    if isinstance(exc, ModelOutputError):
        return "model_output"
    if isinstance(exc, ModelError):
        return "model_error"
    return "server_error"


def _count(app: Any, code: str) -> None:
    service = getattr(app.state, "service", None)
    if service is not None:
        service.metrics.errors.labels(code).inc()


async def _icm_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IcmError)
    _count(request.app, str(exc.code))
    if exc.http_status >= 500 and not isinstance(exc, NotReady):
        log.warning("%s: %s", exc.code, exc)
    return error_response(exc, request_id(request))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return await _icm_error(request, InputError(_validation_message(exc.errors())))


def _validation_message(errors: Any) -> str:
    parts = []
    for err in list(errors)[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (no such route, wrong method) in the same shape."""
    assert isinstance(exc, StarletteHTTPException)
    error = InputError(str(exc.detail)) if exc.status_code < 500 else IcmError(str(exc.detail))
    error.http_status = exc.status_code
    error.code = _HTTP_CODES.get(exc.status_code, "error")
    _count(request.app, error.code)
    response = error_response(error, request_id(request))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _unexpected_error(scope: Scope, exc: Exception, rid: str) -> JSONResponse:
    """A bug: logged with its trace, answered without it (by the service middleware, which gives
    the answer its X-Request-ID and keeps the connection open)."""
    log.error("unexpected error", exc_info=exc, extra={"request_id": rid})
    _count(scope["app"], "internal")
    error = IcmError("internal error; the request id identifies it in the service's log")
    error.code = "internal"
    return error_response(error, rid)


def _report_loading(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("the backend did not load: %s", exc, exc_info=exc)
    else:
        log.info("backend ready")


def _safe_url(url: str) -> str:
    """The database URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
