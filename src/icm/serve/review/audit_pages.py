"""The pages that look back: the audit log and its export (admins), and the statistics."""

from __future__ import annotations

import json
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from icm.serve.review.render import PREFIX, render
from icm.serve.review.session import admin, reviews_of, signed_in
from icm.serve.store.bank_review import bank_decided

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    viewer = await admin(request)
    reviews = reviews_of(request)
    entries = await run_in_threadpool(reviews.audit_entries, 0, 500)
    users = {u.id: u.username for u in await run_in_threadpool(reviews.users)}
    return render(request, "audit.html", viewer=viewer, entries=entries, users=users)


@router.get("/audit/export")
async def audit_export(request: Request) -> Response:
    """The whole log as JSONL, oldest first (the export itself audited)."""
    viewer = await admin(request)
    reviews = reviews_of(request)
    await run_in_threadpool(reviews.audit, viewer.user.id, "audit_export")
    entries = await run_in_threadpool(reviews.audit_entries, 0, None, False)

    def lines() -> Iterator[str]:
        for e in entries:
            yield json.dumps({"seq": e.seq, "at": e.at.isoformat(), "actor": e.actor, "action": e.action,
                              "target": e.target, "before": e.before, "after": e.after}) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"Content-Disposition": 'attachment; filename="icm-audit.jsonl"'})


@router.get("/stats")
async def stats_page(request: Request) -> Response:
    from icm.serve.review.stats import compute_stats, plots

    viewer = await signed_in(request)
    reviews = reviews_of(request)
    stats = await run_in_threadpool(compute_stats, reviews)
    users = {u.id: u.username for u in await run_in_threadpool(reviews.users)}
    svgs = await run_in_threadpool(plots, stats, users)
    banked = await run_in_threadpool(bank_decided, reviews.store)
    return render(request, "stats.html", viewer=viewer, stats=stats, plots=svgs, users=users, banked=banked)
