"""The console's pages under ``/review``: rendered on the server (Jinja2), a little plain
JavaScript for the keyboard, every form with the session's CSRF token, every step audited."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from icm import __version__
from icm.errors import IcmError, InputError
from icm.media import format_media_type
from icm.policy.schema import Policy
from icm.results import ModerationResult, Verdict
from icm.serve.bounds import BIGINT_MAX, parse_int
from icm.serve.errors import Conflict, NotFound
from icm.serve.review.accounts import Login, failed_login_actor, hash_token, log_in, same_token
from icm.serve.review.appeals import statement_of_reasons
from icm.serve.review.decision import FINAL_ACTIONS, check_decision, labelled_action, rule_actions
from icm.serve.review.statement_view import statement_view
from icm.serve.service import Service, service_of
from icm.serve.store.models import QueueItem, Review, StoredResult, User, utcnow
from icm.serve.store.review import QueueFilter, ReviewStore

SESSION_COOKIE = "icm_session"
# how long a reviewer may take back a decision that moved them on to the next item
UNDO_WINDOW = timedelta(seconds=10)
LOGIN_COOKIE = "icm_login_csrf"
PREFIX = "/review"

router = APIRouter(prefix=PREFIX, include_in_schema=False)
_templates = Environment(loader=PackageLoader("icm.serve.review", "templates"), autoescape=select_autoescape(),
                         trim_blocks=True, lstrip_blocks=True)


def install(app: FastAPI) -> None:
    """Add the console's pages and static files to the service."""
    app.include_router(router)
    app.add_exception_handler(_Answer, _send_answer)
    app.mount(PREFIX + "/static", StaticFiles(packages=[("icm.serve.review", "static")]), name="review-static")


@dataclass(frozen=True)
class Viewer:
    """The logged-in person of a request."""

    user: User
    csrf: str
    token_hash: str

    @property
    def admin(self) -> bool:
        return self.user.role == "admin"


def reviews_of(service: Service) -> ReviewStore:
    return service.judging.reviews


def _render(request: Request, template: str, status: int = 200, viewer: Viewer | None = None,
            **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(
        viewer=viewer, prefix=PREFIX, version=__version__, path=request.url.path, **context
    )
    response = HTMLResponse(html, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _message(request: Request, viewer: Viewer | None, status: int, title: str, text: str) -> HTMLResponse:
    return _render(request, "message.html", status, viewer, title=title, text=text)


async def _viewer(request: Request) -> Viewer | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    found = await run_in_threadpool(reviews_of(service_of(request)).live_session, hash_token(token))
    if found is None:
        return None
    session, user = found
    return Viewer(user=user, csrf=session.csrf, token_hash=session.token_hash)


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?" + urlencode({"next": target}), status_code=303)


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _csrf_refused(request: Request, viewer: Viewer | None) -> HTMLResponse:
    return _message(request, viewer, 403, "Form refused",
                    "The form was sent without its CSRF token (or with a wrong one), so nothing was changed. "
                    "Reload the page and try again.")


class _Answer(IcmError):
    """A page's early answer (log in first, the form is refused, admins only, not your item):
    raised by the checks below, sent as it is by the handler :func:`install` adds (it is found
    before the service's handler for every IcmError, being the more specific class)."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"answered {response.status_code}")
        self.response = response
        self.http_status = response.status_code


async def _send_answer(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _Answer)
    return exc.response


async def _signed_in(request: Request) -> Viewer:
    """The logged-in person of a page; raises the way to the login page when there is none."""
    viewer = await _viewer(request)
    if viewer is None:
        raise _Answer(_to_login(request))
    return viewer


async def _admin(request: Request) -> Viewer:
    viewer = await _signed_in(request)
    if not viewer.admin:
        raise _Answer(_message(request, viewer, 403, "Admins only", "The audit log is for admins."))
    return viewer


async def _posted(request: Request) -> tuple[Viewer, dict[str, str]]:
    """The viewer and the posted form of a state-changing request; raises the answer that
    refuses it (not logged in, or without the session's CSRF token)."""
    viewer = await _signed_in(request)
    form = await _form(request)
    if not same_token(form.get("csrf") or request.headers.get("x-csrf-token"), viewer.csrf):
        await run_in_threadpool(reviews_of(service_of(request)).audit, viewer.user.id, "csrf_refused",
                                request.url.path)
        raise _Answer(_csrf_refused(request, viewer))
    return viewer, form


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


# -- login and logout ----------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request, next: str = PREFIX) -> HTMLResponse:  # noqa: A002
    return _login_form(request, 200, next)


def _login_form(request: Request, status: int, next_page: str, error: str | None = None,
                username: str = "") -> HTMLResponse:
    """The login form with a fresh login CSRF token of the server's choosing, in its cookie and
    the form (a token the browser already carries is never taken over: it may be one planted
    by someone else)."""
    token = secrets.token_urlsafe(32)
    response = _render(request, "login.html", status, csrf=token, next=_local(next_page), error=error,
                       username=username)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request),
                        path=PREFIX)
    return response


def _local(target: str) -> str:
    """Only a path of the console is a place to go after logging in (no open redirect)."""
    return target if target.startswith(PREFIX) and not target.startswith("//") else PREFIX


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    service = service_of(request)
    cookie = request.cookies.get(LOGIN_COOKIE)
    if cookie is None or not same_token(form.get("csrf"), cookie):
        return _csrf_refused(request, None)
    settings = service.settings
    username = form.get("username", "")
    try:
        done: Login = await run_in_threadpool(
            log_in, reviews_of(service), username, form.get("password", ""),
            max_failures=settings.review_max_failures,
            lockout=timedelta(minutes=settings.review_lockout_minutes),
            lifetime=timedelta(hours=settings.review_session_hours),
        )
    except IcmError as exc:
        actor = await run_in_threadpool(failed_login_actor, reviews_of(service), username)
        await run_in_threadpool(reviews_of(service).audit, actor[:120], str(exc.code))
        return _login_form(request, exc.http_status, form.get("next", PREFIX), str(exc), username)
    await run_in_threadpool(reviews_of(service).audit, done.user.id, "login")
    response = RedirectResponse(_local(form.get("next", PREFIX)), status_code=303)
    response.set_cookie(SESSION_COOKIE, done.token, httponly=True, samesite="strict", secure=_secure(request),
                        path=PREFIX, max_age=int(settings.review_session_hours * 3600))
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    viewer, _ = await _posted(request)
    store = reviews_of(service_of(request))
    await run_in_threadpool(store.end_session, viewer.token_hash)
    await run_in_threadpool(store.audit, viewer.user.id, "logout")
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


# -- the queue -------------------------------------------------------------------------------------


def _filter(values: dict[str, str]) -> QueueFilter:
    verdict = values.get("verdict") or None
    if verdict is not None and verdict not in {v.value for v in Verdict}:
        raise InputError(f"unknown verdict {verdict!r}")
    return QueueFilter(policy_id=values.get("policy") or None, rule_id=values.get("rule") or None,
                       verdict=verdict, kind=values.get("kind") or None)


def _query(where: QueueFilter, **extra: str) -> str:
    pairs = {"policy": where.policy_id, "rule": where.rule_id, "verdict": where.verdict, "kind": where.kind, **extra}
    return urlencode({k: v for k, v in pairs.items() if v})


@router.get("")
async def queue_page(request: Request) -> Response:
    viewer = await _signed_in(request)
    where = _filter(dict(request.query_params))
    store = reviews_of(service_of(request))
    rows = await run_in_threadpool(store.open_items, where, 200)
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
    return _render(request, "queue.html", viewer=viewer, items=items, where=where, query=_query(where),
                   policies=sorted(set(policies)), verdicts=[v.value for v in Verdict],
                   notice=request.query_params.get("notice"), decided=await _just_decided(request, viewer))


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


async def _take_next(request: Request, viewer: Viewer, where: QueueFilter, skip: int | None = None,
                     decided: int | None = None) -> Response:
    """The way to the next item (or to the queue, saying it is empty); ``decided`` names the
    item just decided, which the next page mentions and offers to undo."""
    service = service_of(request)
    lease = timedelta(seconds=service.settings.review_lease_seconds)
    taken = await run_in_threadpool(reviews_of(service).take_next, viewer.user.id, lease, where, skip)
    extra = {"decided": str(decided)} if decided is not None else {}
    if taken is None:
        query = _query(where, notice="empty", **extra)
        return RedirectResponse(f"{PREFIX}?{query}", status_code=303)
    return RedirectResponse(_item_url(taken.item.id, where, **extra), status_code=303)


def _item_url(item_id: int, where: QueueFilter, **extra: str) -> str:
    query = _query(where, **extra)
    return f"{PREFIX}/items/{item_id}" + (f"?{query}" if query else "")


@router.post("/next")
async def next_item(request: Request) -> Response:
    viewer, form = await _posted(request)
    where = _filter(form)
    current = form.get("release") or ""
    skip = _item_id(request, viewer, current) if current else None
    if skip is not None:
        store = reviews_of(service_of(request))
        if await run_in_threadpool(store.release, skip, viewer.user.id):
            await run_in_threadpool(store.audit, viewer.user.id, "release", f"item:{skip}")
    return await _take_next(request, viewer, where, skip)


@router.post("/items/{item_id}/take")
async def take_item(item_id: str, request: Request) -> Response:
    viewer, form = await _posted(request)
    number = _item_id(request, viewer, item_id)
    service = service_of(request)
    try:
        await run_in_threadpool(reviews_of(service).take, number, viewer.user.id,
                                timedelta(seconds=service.settings.review_lease_seconds))
    except (Conflict, NotFound) as exc:
        return _message(request, viewer, exc.http_status, "Not available", str(exc))
    return RedirectResponse(_item_url(number, _filter(form)), status_code=303)


# -- the item view -------------------------------------------------------------------------------

def _item_number(raw: str) -> int | None:
    """An optional item id (a form's or a query's); None when it is absent or not one."""
    try:
        return parse_int(raw, "an item id", high=BIGINT_MAX)
    except InputError:
        return None


def _item_id(request: Request, viewer: Viewer, raw: str) -> int:
    """The item id of a console URL (ASCII digits within the queue's 64-bit ids, as
    :func:`icm.serve.bounds.parse_int` reads every number a request brings); a 400 page otherwise."""
    try:
        return parse_int(raw, "an item id", high=BIGINT_MAX)
    except InputError:
        raise _Answer(_message(request, viewer, 400, "Not an item id",
                               f"An item id is a whole number from 1 to {BIGINT_MAX} in ASCII digits, "
                               f"not {raw[:40]!r}.")) from None


@dataclass(frozen=True)
class _Access:
    item: QueueItem
    mine: Review | None
    leased: bool


async def _access(request: Request, viewer: Viewer, item_id: int) -> _Access:
    """The item, when this person holds its lease or reviewed it (admins may look at any);
    raises the page that says why not."""
    store = reviews_of(service_of(request))
    item = await run_in_threadpool(store.item, item_id)
    if item is None:
        raise _Answer(_message(request, viewer, 404, "No such item", f"There is no queue item {item_id}."))
    lease = await run_in_threadpool(store.lease_of, item_id, viewer.user.id)
    mine = await run_in_threadpool(store.my_review, item_id, viewer.user.id)
    if lease is None and mine is None and not viewer.admin:
        raise _Answer(_render(request, "message.html", 409, viewer, title="Not leased to you",
                              text="This item is not leased to you. Take it from the queue (it may be another "
                              "reviewer's now).", take=item_id, item_closed=item.closed_at is not None))
    return _Access(item, mine, lease is not None)


@router.get("/items/{item_id}")
async def item_page(item_id: str, request: Request) -> Response:
    viewer = await _signed_in(request)
    number = _item_id(request, viewer, item_id)
    access = await _access(request, viewer, number)
    service = service_of(request)
    store = reviews_of(service)
    row = await run_in_threadpool(service.store.result, access.item.result_id)
    if row is None:
        return _message(request, viewer, 404, "Result deleted", "The stored result of this item was purged.")
    result = ModerationResult.model_validate(row.result)
    policy = await _policy(service, row.policy_id, row.policy_version)
    previous = await run_in_threadpool(store.previous_item, viewer.user.id, number)
    await run_in_threadpool(store.audit, viewer.user.id, "view", f"item:{number}",
                            None, {"result": row.id, "decision": row.decision})
    return await _item_view(request, viewer, access, row, result, policy, _filter(dict(request.query_params)),
                            previous=previous, decided=await _just_decided(request, viewer))


async def _item_view(request: Request, viewer: Viewer, access: _Access, row: StoredResult, result: ModerationResult,
                     policy: Policy | None, where: QueueFilter, *, status: int = 200, previous: int | None = None,
                     error: str | None = None, form: dict[str, str] | None = None,
                     decided: dict[str, Any] | None = None) -> HTMLResponse:
    """The item page: as first shown, or again after a refused decision (its error, and the form
    as it was sent)."""
    service = service_of(request)
    appeal_id = access.item.appeal_id
    appeal = await run_in_threadpool(reviews_of(service).appeal, appeal_id) if appeal_id else None
    rules = _rules(result, policy, access.mine)
    if access.mine is not None:
        action_now: str | None = access.mine.action
    else:
        action_now = labelled_action({r["id"]: r["chosen"] for r in rules if r["chosen"]},
                                     {r["id"]: r["action"] for r in rules})
    return _render(
        request, "item.html", status, viewer, item=access.item, row=row, result=result,
        rules=rules, boxes=_boxes(result), mine=access.mine, leased=access.leased,
        appeal=appeal, actions=FINAL_ACTIONS, previous=previous, where=where,
        query=_query(where), image_kept=bool(row.image_kept and service.judging.images is not None),
        reveal=viewer.user.reveal_by_default, error=error, form=form, action_now=action_now or "",
        default_reason=_default_reason(rules) if access.mine is None else access.mine.reason_rule,
        decided=decided, folded=sum(1 for r in rules if r["folded"]),
        dsa=await statement_view(service, row.id),
    )


async def _policy(service: Service, policy_id: str, version: int) -> Policy | None:
    try:
        return await run_in_threadpool(service.catalog.resolve, f"{policy_id}@{version}")
    except IcmError:
        return None


# the rules the model found violated or could not assess come first; the compliant ones are folded
_ORDER = {Verdict.violates: 0, Verdict.uncertain: 1, Verdict.complies: 2}


def _rules(result: ModerationResult, policy: Policy | None, mine: Review | None) -> list[dict[str, Any]]:
    """The rules as the item page shows them, numbered for the keys in that order: violated,
    then uncertain (which start unchosen: only a person can settle them), then compliant."""
    texts = {rule.id: rule for rule in policy.rules} if policy is not None else {}
    actions = rule_actions(result, policy)
    ordered = sorted(result.verdicts, key=lambda v: _ORDER[v.verdict])
    out = []
    for number, verdict in enumerate(ordered, start=1):
        rule = texts.get(verdict.rule_id)
        if mine is not None:
            chosen = mine.labels.get(verdict.rule_id, "")
        else:
            chosen = verdict.verdict.value if verdict.verdict is not Verdict.uncertain else ""
        out.append({
            "number": number, "id": verdict.rule_id, "verdict": verdict,
            "text": rule.text if rule is not None else "(a question asked with the request)",
            "action": actions[verdict.rule_id], "chosen": chosen,
            "folded": verdict.verdict is Verdict.complies,
        })
    return out


def _default_reason(rules: list[dict[str, Any]]) -> str | None:
    """The reason a decision starts with: the first rule labelled violates (an uncertain rule is
    never chosen for the reviewer)."""
    return next((rule["id"] for rule in rules if rule["chosen"] == "violates"), None)


def _boxes(result: ModerationResult) -> list[dict[str, Any]]:
    """Evidence boxes as shares of the image, for drawing over it at any displayed size."""
    width = result.media.get("width")
    height = result.media.get("height")
    if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
        return []
    boxes = []
    for verdict in result.verdicts:
        for evidence in verdict.evidence:
            if evidence.box is None or len(evidence.box) != 4:
                continue
            x, y, w, h = evidence.box
            label = f"{verdict.rule_id}: {evidence.signal or evidence.criterion}"
            if evidence.score is not None:
                label += f" {evidence.score:.2f}"
            if evidence.frame is not None:
                label += f" (frame {evidence.frame})"
            boxes.append({
                "left": 100 * x / width, "top": 100 * y / height,
                "width": 100 * w / width, "height": 100 * h / height,
                "label": label, "verdict": verdict.verdict.value,
            })
    return boxes


@router.get("/items/{item_id}/image")
async def item_image(item_id: str, request: Request) -> Response:
    viewer = await _viewer(request)
    if viewer is None:
        return Response(status_code=401)
    try:
        access = await _access(request, viewer, _item_id(request, viewer, item_id))
    except _Answer as refused:
        return Response(status_code=refused.response.status_code)
    service = service_of(request)
    row = await run_in_threadpool(service.store.result, access.item.result_id)
    images = service.judging.images
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
        viewer, _ = await _posted(request)
        access = await _access(request, viewer, _item_id(request, viewer, item_id))
    except _Answer as refused:
        return Response(status_code=refused.response.status_code)
    await run_in_threadpool(reviews_of(service_of(request)).audit, viewer.user.id, "reveal", f"item:{access.item.id}")
    return Response(status_code=204)


@router.post("/items/{item_id}/decision")
async def decide(item_id: str, request: Request) -> Response:
    viewer, form = await _posted(request)
    service = service_of(request)
    store = reviews_of(service)
    access = await _access(request, viewer, _item_id(request, viewer, item_id))
    number = access.item.id
    row = await run_in_threadpool(service.store.result, access.item.result_id)
    if row is None:
        return _message(request, viewer, 404, "Result deleted", "The stored result of this item was purged.")
    result = ModerationResult.model_validate(row.result)
    policy = await _policy(service, row.policy_id, row.policy_version)
    where = _filter(form)
    try:
        chosen = check_decision(form, result, policy)
        statement = None
        if access.item.appeal_id is not None:
            statement = statement_of_reasons(result, policy, chosen.labels, chosen.action, chosen.reason_rule,
                                             chosen.note)
        review, earlier = await run_in_threadpool(store.decide, number, viewer.user.id, chosen.labels,
                                                  chosen.action, chosen.reason_rule, chosen.note, statement)
    except (InputError, Conflict) as exc:
        return await _item_view(request, viewer, access, row, result, policy, where, status=exc.http_status,
                                error=str(exc), form=form)
    after: dict[str, Any] = {"review": review.id, "action": chosen.action, "labels": chosen.labels,
                             "reason_rule": chosen.reason_rule, "note": chosen.note}
    before: dict[str, Any]
    if earlier is None:
        before = {"decision": row.decision, "verdicts": {v.rule_id: v.verdict.value for v in result.verdicts}}
        await run_in_threadpool(store.audit, viewer.user.id, "decide", f"item:{number}", before, after)
    else:
        before = _review_record(earlier)
        await run_in_threadpool(store.audit, viewer.user.id, "change", f"item:{number}", before, after)
    if access.item.appeal_id is not None and earlier is None:
        await run_in_threadpool(store.audit, viewer.user.id, "appeal_decided", access.item.appeal_id,
                                {"decision": row.decision}, {"decision": chosen.action, "statement": statement})
    if earlier is not None:
        return RedirectResponse(_item_url(number, where), status_code=303)
    return await _take_next(request, viewer, where, decided=number)


def _review_record(review: Review) -> dict[str, Any]:
    return {"review": review.id, "action": review.action, "labels": review.labels,
            "reason_rule": review.reason_rule, "note": review.note}


@router.post("/items/{item_id}/undo")
async def undo(item_id: str, request: Request) -> Response:
    """Take back the reviewer's last decision within :data:`UNDO_WINDOW` (audited) and open its
    item again; the item they had moved on to goes back to the queue."""
    viewer, form = await _posted(request)
    number = _item_id(request, viewer, item_id)
    service = service_of(request)
    store = reviews_of(service)
    lease = timedelta(seconds=service.settings.review_lease_seconds)
    try:
        undone = await run_in_threadpool(store.undo, number, viewer.user.id, UNDO_WINDOW, lease)
    except Conflict as exc:
        return _message(request, viewer, exc.http_status, "Not undone", str(exc))
    await run_in_threadpool(store.audit, viewer.user.id, "undo", f"item:{number}", _review_record(undone), None)
    moved_to = _item_number(form.get("release", ""))
    if moved_to is not None and moved_to != number and await run_in_threadpool(store.release, moved_to,
                                                                               viewer.user.id):
        await run_in_threadpool(store.audit, viewer.user.id, "release", f"item:{moved_to}")
    return RedirectResponse(_item_url(number, _filter(form)), status_code=303)


async def _just_decided(request: Request, viewer: Viewer) -> dict[str, Any] | None:
    """The decision named by ``?decided=ID`` (the one that led here), when it is the viewer's:
    what to say about it, and how many seconds are left to undo it."""
    number = _item_number(request.query_params.get("decided", ""))
    if number is None:
        return None
    store = reviews_of(service_of(request))
    review = await run_in_threadpool(store.my_review, number, viewer.user.id)
    if review is None:
        return None
    last = await run_in_threadpool(store.previous_item, viewer.user.id, None)
    left = (review.created_at + UNDO_WINDOW - utcnow()).total_seconds()
    undoable = last == number and review.supersedes is None and left > 0
    violated = [rule_id for rule_id, label in review.labels.items() if label == "violates"]
    return {"item": number, "action": review.action, "violated": violated,
            "undo_seconds": max(1, int(left)) if undoable else 0}


@router.post("/settings")
async def settings(request: Request) -> Response:
    viewer, form = await _posted(request)
    reveal_default = form.get("reveal_by_default") == "on"
    store = reviews_of(service_of(request))
    await run_in_threadpool(store.set_reveal, viewer.user.id, reveal_default)
    await run_in_threadpool(store.audit, viewer.user.id, "setting", f"user:{viewer.user.id}",
                            {"reveal_by_default": viewer.user.reveal_by_default},
                            {"reveal_by_default": reveal_default})
    return RedirectResponse(_local(form.get("back", PREFIX)), status_code=303)


# -- audit (admins) ---------------------------------------------------------------------------------


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    viewer = await _admin(request)
    entries = await run_in_threadpool(reviews_of(service_of(request)).audit_entries, 0, 500)
    users = {u.id: u.username for u in await run_in_threadpool(reviews_of(service_of(request)).users)}
    return _render(request, "audit.html", viewer=viewer, entries=entries, users=users)


@router.get("/audit/export")
async def audit_export(request: Request) -> Response:
    """The whole log as JSONL, oldest first."""
    import json

    viewer = await _admin(request)
    store = reviews_of(service_of(request))
    await run_in_threadpool(store.audit, viewer.user.id, "audit_export")
    entries = await run_in_threadpool(store.audit_entries, 0, None, False)

    def lines() -> Any:
        for e in entries:
            yield json.dumps({"seq": e.seq, "at": e.at.isoformat(), "actor": e.actor, "action": e.action,
                              "target": e.target, "before": e.before, "after": e.after}) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"Content-Disposition": 'attachment; filename="icm-audit.jsonl"'})


# -- statistics ---------------------------------------------------------------------------------------


@router.get("/stats")
async def stats_page(request: Request) -> Response:
    from icm.serve.review.stats import compute_stats, plots

    viewer = await _signed_in(request)
    service = service_of(request)
    stats = await run_in_threadpool(compute_stats, reviews_of(service))
    users = {u.id: u.username for u in await run_in_threadpool(reviews_of(service).users)}
    svgs = await run_in_threadpool(plots, stats, users)
    return _render(request, "stats.html", viewer=viewer, stats=stats, plots=svgs, users=users)
