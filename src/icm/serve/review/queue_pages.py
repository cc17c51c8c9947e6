"""The queue page, taking the next item (or a chosen one), and what the queue's URLs carry: the
filter, the item ids, and the decision just made (offered for undo)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from icm.errors import InputError
from icm.results import Verdict
from icm.serve.bounds import BIGINT_MAX, parse_int
from icm.serve.errors import Conflict, NotFound
from icm.serve.review.render import PREFIX, Refused, message, render
from icm.serve.review.session import Viewer, posted, reviews_of, signed_in
from icm.serve.service import service_of
from icm.serve.store.bank_review import bank_decided
from icm.serve.store.models import utcnow
from icm.serve.store.reviews import QueueFilter

# how long a reviewer may take back a decision that moved them on to the next item
UNDO_WINDOW = timedelta(seconds=10)

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def queue_filter(values: dict[str, str]) -> QueueFilter:
    verdict = values.get("verdict") or None
    if verdict is not None and verdict not in {v.value for v in Verdict}:
        raise InputError(f"unknown verdict {verdict!r}")
    return QueueFilter(policy_id=values.get("policy") or None, rule_id=values.get("rule") or None,
                       verdict=verdict, kind=values.get("kind") or None)


def query(where: QueueFilter, **extra: str) -> str:
    pairs = {"policy": where.policy_id, "rule": where.rule_id, "verdict": where.verdict, "kind": where.kind, **extra}
    return urlencode({k: v for k, v in pairs.items() if v})


def item_url(item_id: int, where: QueueFilter, **extra: str) -> str:
    found = query(where, **extra)
    return f"{PREFIX}/items/{item_id}" + (f"?{found}" if found else "")


def item_number(raw: str) -> int | None:
    """An optional item id (a form's or a query's); None when it is absent or not one."""
    try:
        return parse_int(raw, "an item id", high=BIGINT_MAX)
    except InputError:
        return None


def parse_item_id(request: Request, viewer: Viewer, raw: str) -> int:
    """The item id of a console URL (ASCII digits within the queue's 64-bit ids, as
    :func:`icm.serve.bounds.parse_int` reads every number a request brings); :class:`Refused`
    with a 400 page otherwise."""
    number = item_number(raw)
    if number is None:
        raise Refused(message(request, viewer, 400, "Not an item id",
                              f"An item id is a whole number from 1 to {BIGINT_MAX} in ASCII digits, "
                              f"not {raw[:40]!r}."))
    return number


async def posted_item(request: Request, raw_id: str) -> tuple[Viewer, dict[str, str], int]:
    """:func:`~icm.serve.review.session.posted` for a form about an item: also its id."""
    viewer, form = await posted(request)
    return viewer, form, parse_item_id(request, viewer, raw_id)


@router.get("")
async def queue_page(request: Request) -> Response:
    viewer = await signed_in(request)
    where = queue_filter(dict(request.query_params))
    rows = await run_in_threadpool(reviews_of(request).open_items, where, 200)
    now = utcnow()
    items = [
        {
            "item": item,
            "age": _age(now - item.created_at),
            "tags": [tag.split(":", 1) for tag in item.verdicts.strip(",").split(",") if ":" in tag],
            "leased": [lease for lease in leases if lease.user_id != viewer.user.id],
            "mine": any(lease.user_id == viewer.user.id for lease in leases),
        }
        for item, leases in rows
    ]
    policies = [p.policy_id for p in await run_in_threadpool(service_of(request).store.policy_versions)]
    banked = await run_in_threadpool(bank_decided, service_of(request).store)
    return render(request, "queue.html", viewer=viewer, items=items, where=where, query=query(where),
                  policies=sorted(set(policies)), verdicts=[v.value for v in Verdict], banked=banked,
                  notice=request.query_params.get("notice"), decided=await just_decided(request, viewer))


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


async def take_next(request: Request, viewer: Viewer, where: QueueFilter, skip: int | None = None,
                    decided: int | None = None) -> Response:
    """The way to the next item (or to the queue, saying it is empty); ``decided`` names the
    item just decided, which the next page mentions and offers to undo."""
    lease = timedelta(seconds=service_of(request).settings.review_lease_seconds)
    taken = await run_in_threadpool(reviews_of(request).take_next, viewer.user.id, lease, where, skip)
    extra = {"decided": str(decided)} if decided is not None else {}
    if taken is None:
        return RedirectResponse(f"{PREFIX}?{query(where, notice='empty', **extra)}", status_code=303)
    return RedirectResponse(item_url(taken.item.id, where, **extra), status_code=303)


async def release(request: Request, viewer: Viewer, number: int) -> None:
    """Give an item this viewer holds back to the queue (audited when they held it)."""
    reviews = reviews_of(request)
    if await run_in_threadpool(reviews.release, number, viewer.user.id):
        await run_in_threadpool(reviews.audit, viewer.user.id, "release", f"item:{number}")


@router.post("/next")
async def next_item(request: Request) -> Response:
    viewer, form = await posted(request)
    where = queue_filter(form)
    current = form.get("release") or ""
    skip = parse_item_id(request, viewer, current) if current else None
    if skip is not None:
        await release(request, viewer, skip)
    return await take_next(request, viewer, where, skip)


@router.post("/items/{item_id}/take")
async def take_item(item_id: str, request: Request) -> Response:
    viewer, form, number = await posted_item(request, item_id)
    lease = timedelta(seconds=service_of(request).settings.review_lease_seconds)
    try:
        await run_in_threadpool(reviews_of(request).take, number, viewer.user.id, lease)
    except (Conflict, NotFound) as exc:
        return message(request, viewer, exc.http_status, "Not available", str(exc))
    return RedirectResponse(item_url(number, queue_filter(form)), status_code=303)


async def just_decided(request: Request, viewer: Viewer) -> dict[str, Any] | None:
    """The decision named by ``?decided=ID`` (the one that led here), when it is the viewer's:
    what to say about it, and how many seconds are left to undo it."""
    number = item_number(request.query_params.get("decided", ""))
    if number is None:
        return None
    reviews = reviews_of(request)
    review = await run_in_threadpool(reviews.my_review, number, viewer.user.id)
    if review is None:
        return None
    last = await run_in_threadpool(reviews.previous_item, viewer.user.id, None)
    left = (review.created_at + UNDO_WINDOW - utcnow()).total_seconds()
    undoable = last == number and review.supersedes is None and left > 0
    violated = [rule_id for rule_id, label in review.labels.items() if label == "violates"]
    return {"item": number, "action": review.action, "violated": violated,
            "undo_seconds": max(1, int(left)) if undoable else 0}
