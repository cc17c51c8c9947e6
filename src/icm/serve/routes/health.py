"""Operations: liveness, readiness (backend loaded, store reachable) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from icm.serve.errors import NotReady
from icm.serve.metrics import CONTENT_TYPE
from icm.serve.openapi import errors
from icm.serve.service import service_of

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The backend is loaded and the store answers", responses=errors(503))
async def readyz(request: Request) -> dict[str, str]:
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady("starting")
    if not service.judging.ready:
        raise NotReady(service.judging.not_ready_reason)
    try:
        await run_in_threadpool(service.store.ping)
    except Exception as exc:
        raise NotReady(f"the store does not answer: {type(exc).__name__}") from exc
    return {"status": "ready", "backend": service.judging.backend_key}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    service = service_of(request)
    return Response(service.metrics.render(), media_type=CONTENT_TYPE)
