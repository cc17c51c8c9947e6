"""Who is looking: the session cookie, login and logout, the CSRF check of every form, and the
viewer's settings. A check that refuses a request raises :class:`~.render.Refused` with the
answer that says why (the login page, a refused form, admins only)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from icm.errors import IcmError
from icm.serve.review.accounts import Login, failed_login_actor, hash_token, log_in, same_token
from icm.serve.review.render import PREFIX, Refused, local, message, render
from icm.serve.service import service_of
from icm.serve.store.models import User
from icm.serve.store.reviews import ReviewStore

SESSION_COOKIE = "icm_session"
LOGIN_COOKIE = "icm_login_csrf"

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@dataclass(frozen=True)
class Viewer:
    """The logged-in person of a request."""

    user: User
    csrf: str
    token_hash: str

    @property
    def admin(self) -> bool:
        return self.user.role == "admin"


def reviews_of(request: Request) -> ReviewStore:
    return service_of(request).reviews


async def viewer_of(request: Request) -> Viewer | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    found = await run_in_threadpool(reviews_of(request).live_session, hash_token(token))
    if found is None:
        return None
    session, user = found
    return Viewer(user=user, csrf=session.csrf, token_hash=session.token_hash)


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?" + urlencode({"next": target}), status_code=303)


async def form_of(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _csrf_refused(request: Request, viewer: Viewer | None) -> HTMLResponse:
    return message(request, viewer, 403, "Form refused",
                   "The form was sent without its CSRF token (or with a wrong one), so nothing was changed. "
                   "Reload the page and try again.")


async def signed_in(request: Request) -> Viewer:
    """The logged-in person of a page; :class:`Refused` with the way to the login page when there is none."""
    viewer = await viewer_of(request)
    if viewer is None:
        raise Refused(_to_login(request))
    return viewer


async def admin(request: Request) -> Viewer:
    """The logged-in admin; :class:`Refused` otherwise."""
    viewer = await signed_in(request)
    if not viewer.admin:
        raise Refused(message(request, viewer, 403, "Admins only", "The audit log is for admins."))
    return viewer


async def posted(request: Request) -> tuple[Viewer, dict[str, str]]:
    """The viewer and the posted form of a state-changing request; :class:`Refused` when it is
    not logged in or comes without the session's CSRF token (audited)."""
    viewer = await signed_in(request)
    form = await form_of(request)
    if not same_token(form.get("csrf") or request.headers.get("x-csrf-token"), viewer.csrf):
        await run_in_threadpool(reviews_of(request).audit, viewer.user.id, "csrf_refused", request.url.path)
        raise Refused(_csrf_refused(request, viewer))
    return viewer, form


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("/login")
async def login_page(request: Request, next: str = PREFIX) -> HTMLResponse:  # noqa: A002
    return _login_form(request, 200, next)


def _login_form(request: Request, status: int, next_page: str, error: str | None = None,
                username: str = "") -> HTMLResponse:
    """The login form with a fresh login CSRF token of the server's choosing, in its cookie and
    the form (a token the browser already carries is never taken over: it may be one planted
    by someone else)."""
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", status, csrf=token, next=local(next_page), error=error,
                      username=username)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request),
                        path=PREFIX)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await form_of(request)
    cookie = request.cookies.get(LOGIN_COOKIE)
    if cookie is None or not same_token(form.get("csrf"), cookie):
        return _csrf_refused(request, None)
    settings = service_of(request).settings
    reviews = reviews_of(request)
    username = form.get("username", "")
    try:
        done: Login = await run_in_threadpool(
            log_in, reviews, username, form.get("password", ""),
            max_failures=settings.review_max_failures,
            lockout=timedelta(minutes=settings.review_lockout_minutes),
            lifetime=timedelta(hours=settings.review_session_hours),
        )
    except IcmError as exc:
        actor = await run_in_threadpool(failed_login_actor, reviews, username)
        await run_in_threadpool(reviews.audit, actor[:120], str(exc.code))
        return _login_form(request, exc.http_status, form.get("next", PREFIX), str(exc), username)
    await run_in_threadpool(reviews.audit, done.user.id, "login")
    response = RedirectResponse(local(form.get("next", PREFIX)), status_code=303)
    response.set_cookie(SESSION_COOKIE, done.token, httponly=True, samesite="strict", secure=_secure(request),
                        path=PREFIX, max_age=int(settings.review_session_hours * 3600))
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    viewer, _ = await posted(request)
    reviews = reviews_of(request)
    await run_in_threadpool(reviews.end_session, viewer.token_hash)
    await run_in_threadpool(reviews.audit, viewer.user.id, "logout")
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


@router.post("/settings")
async def settings(request: Request) -> Response:
    viewer, form = await posted(request)
    reveal_default = form.get("reveal_by_default") == "on"
    reviews = reviews_of(request)
    await run_in_threadpool(reviews.set_reveal, viewer.user.id, reveal_default)
    await run_in_threadpool(reviews.audit, viewer.user.id, "setting", f"user:{viewer.user.id}",
                            {"reveal_by_default": viewer.user.reveal_by_default},
                            {"reveal_by_default": reveal_default})
    return RedirectResponse(local(form.get("back", PREFIX)), status_code=303)
