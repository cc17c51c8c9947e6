"""The console's pages under ``/review``: rendered on the server (Jinja2), a little plain
JavaScript for the keyboard, every form with the session's CSRF token, every step audited. One
module a concern: :mod:`.session` (who is looking, login, CSRF), :mod:`.queue_pages`,
:mod:`.items` (and :mod:`.item_view`), :mod:`.audit_pages`; :mod:`.render` answers them all."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from icm.serve.review import audit_pages, items, queue_pages, session
from icm.serve.review.render import PREFIX, Refused, answer_refused


def install(app: FastAPI) -> None:
    """Add the console's pages and static files to the service, and the answer of a refused request."""
    app.add_exception_handler(Refused, answer_refused)
    for module in (session, queue_pages, items, audit_pages):
        app.include_router(module.router)
    app.mount(PREFIX + "/static", StaticFiles(packages=[("icm.serve.review", "static")]), name="review-static")
