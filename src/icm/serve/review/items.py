"""An item of the queue: its page, its image (blurred until revealed, the reveal audited), the
decision on it (audited with it, by :meth:`ReviewStore.decide`) and the undo of that decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from icm.errors import InputError
from icm.media import format_media_type
from icm.policy.schema import Policy
from icm.results import ModerationResult
from icm.serve.errors import Conflict
from icm.serve.review.appeals import statement_of_reasons
from icm.serve.review.banking import FIELD, bank_changes, bank_configs, chosen_banks, undo_changes
from icm.serve.review.decision import check_decision
from icm.serve.review.item_view import Access, item_view, policy_of
from icm.serve.review.queue_pages import (
    UNDO_WINDOW,
    item_number,
    item_url,
    just_decided,
    parse_item_id,
    posted_item,
    queue_filter,
    release,
    take_next,
)
from icm.serve.review.render import PREFIX, Refused, message, render
from icm.serve.review.session import Viewer, posted, reviews_of, signed_in, viewer_of
from icm.serve.service import service_of
from icm.serve.store.models import StoredResult

router = APIRouter(prefix=PREFIX, include_in_schema=False)


async def access_to(request: Request, viewer: Viewer, raw_id: str) -> Access:
    """The item of a URL, when this person holds its lease or reviewed it (admins may look at
    any); otherwise :class:`Refused` with the page that says why not."""
    number = parse_item_id(request, viewer, raw_id)
    reviews = reviews_of(request)
    item = await run_in_threadpool(reviews.item, number)
    if item is None:
        raise Refused(message(request, viewer, 404, "No such item", f"There is no queue item {number}."))
    lease = await run_in_threadpool(reviews.lease_of, number, viewer.user.id)
    mine = await run_in_threadpool(reviews.my_review, number, viewer.user.id)
    if lease is None and mine is None and not viewer.admin:
        raise Refused(render(request, "message.html", 409, viewer, title="Not leased to you",
                             text="This item is not leased to you. Take it from the queue (it may be another "
                             "reviewer's now).", take=number, item_closed=item.closed_at is not None))
    return Access(item, mine, lease is not None)


@dataclass(frozen=True)
class _Judged:
    """An item the viewer may see, its stored result as the model judged it, and the policy it
    was judged by."""

    access: Access
    row: StoredResult
    result: ModerationResult
    policy: Policy | None


async def _judged(request: Request, viewer: Viewer, raw_id: str) -> _Judged:
    """The item of a URL with its stored result; :class:`Refused` with the page that says why not
    (not the viewer's, no such item, its result purged)."""
    access = await access_to(request, viewer, raw_id)
    service = service_of(request)
    row = await run_in_threadpool(service.store.result, access.item.result_id)
    if row is None:
        raise Refused(message(request, viewer, 404, "Result deleted", "The stored result of this item was purged."))
    policy = await policy_of(service, row.policy_id, row.policy_version)
    return _Judged(access, row, ModerationResult.model_validate(row.result), policy)


@router.get("/items/{item_id}")
async def item_page(item_id: str, request: Request) -> Response:
    viewer = await signed_in(request)
    judged = await _judged(request, viewer, item_id)
    access = judged.access
    reviews = reviews_of(request)
    number = access.item.id
    previous = await run_in_threadpool(reviews.previous_item, viewer.user.id, number)
    await run_in_threadpool(reviews.audit, viewer.user.id, "view", f"item:{number}",
                            None, {"result": judged.row.id, "decision": judged.row.decision})
    return await item_view(request, viewer, access, judged.row, judged.result, judged.policy,
                           queue_filter(dict(request.query_params)), previous=previous,
                           decided=await just_decided(request, viewer))


@router.get("/items/{item_id}/image")
async def item_image(item_id: str, request: Request) -> Response:
    viewer = await viewer_of(request)
    if viewer is None:
        return Response(status_code=401)
    try:
        access = await access_to(request, viewer, item_id)
    except Refused as refused:  # an image, not a page: the status alone
        return Response(status_code=refused.status_code)
    service = service_of(request)
    row = await run_in_threadpool(service.store.result, access.item.result_id)
    images = service.images
    data = await run_in_threadpool(images.get, row.sha256) if row and row.sha256 and images else None
    if row is None or data is None:
        return Response(status_code=404)
    media_type = format_media_type(row.image_format)
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, no-store",
                                                              "X-Content-Type-Options": "nosniff"})


@router.post("/items/{item_id}/reveal")
async def reveal(item_id: str, request: Request) -> Response:
    """Audit that the viewer unblurred the image of an item they may see (the item page's checks)."""
    try:
        viewer, _ = await posted(request)
        access = await access_to(request, viewer, item_id)
    except Refused as refused:  # asked by the page's script: the status alone
        return Response(status_code=refused.status_code)
    await run_in_threadpool(reviews_of(request).audit, viewer.user.id, "reveal", f"item:{access.item.id}")
    return Response(status_code=204)


@router.post("/items/{item_id}/decision")
async def decide(item_id: str, request: Request) -> Response:
    viewer, form = await posted(request)
    judged = await _judged(request, viewer, item_id)
    access, row, result, policy = judged.access, judged.row, judged.result, judged.policy
    number = access.item.id
    where = queue_filter(form)
    service = service_of(request)
    try:
        chosen = check_decision(form, result, policy)
        statement = None
        if access.item.appeal_id is not None:
            statement = statement_of_reasons(result, policy, chosen.labels, chosen.action, chosen.reason_rule,
                                             chosen.note)
        configs = await run_in_threadpool(bank_configs, service)
        names = [v for v in (await request.form()).getlist(FIELD) if isinstance(v, str)]
        adding = chosen_banks(names, configs, result, chosen.labels)
        also = await run_in_threadpool(bank_changes, service, row, result, adding, configs, user_id=viewer.user.id,
                                       username=viewer.user.username, appeal_id=access.item.appeal_id)
        _, earlier = await run_in_threadpool(reviews_of(request).decide, number, viewer.user.id, chosen.labels,
                                             chosen.action, chosen.reason_rule, chosen.note, statement, also)
    except (InputError, Conflict) as exc:
        return await item_view(request, viewer, access, row, result, policy, where, status=exc.http_status,
                               error=str(exc), form=form)
    if also is not None:
        await run_in_threadpool(service.judging.banks.refresh, True)  # copies from now on meet the change
    if earlier is not None:
        return RedirectResponse(item_url(number, where), status_code=303)
    return await take_next(request, viewer, where, decided=number)


@router.post("/items/{item_id}/undo")
async def undo(item_id: str, request: Request) -> Response:
    """Take back the reviewer's last decision within :data:`UNDO_WINDOW` (audited) and open its
    item again; the item they had moved on to goes back to the queue."""
    viewer, form, number = await posted_item(request, item_id)
    lease = timedelta(seconds=service_of(request).settings.review_lease_seconds)
    try:
        await run_in_threadpool(reviews_of(request).undo, number, viewer.user.id, UNDO_WINDOW, lease,
                                undo_changes(viewer.user.id))
    except Conflict as exc:
        return message(request, viewer, exc.http_status, "Not undone", str(exc))
    await run_in_threadpool(service_of(request).judging.banks.refresh, True)
    moved_to = item_number(form.get("release", ""))
    if moved_to is not None and moved_to != number:
        await release(request, viewer, moved_to)
    return RedirectResponse(item_url(number, queue_filter(form)), status_code=303)
