"""How a console page is answered: rendered on the server (Jinja2) with the console's security
headers (no caching, a strict content security policy, no framing); and how a check refuses one
(:class:`Refused`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from icm import __version__
from icm.errors import IcmError

if TYPE_CHECKING:
    from icm.serve.review.session import Viewer

PREFIX = "/review"

_templates = Environment(loader=PackageLoader("icm.serve.review", "templates"), autoescape=select_autoescape(),
                         trim_blocks=True, lstrip_blocks=True)


def render(request: Request, template: str, status: int = 200, viewer: Viewer | None = None,
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


def message(request: Request, viewer: Viewer | None, status: int, title: str, text: str) -> HTMLResponse:
    return render(request, "message.html", status, viewer, title=title, text=text)


class Refused(IcmError):
    """A console request a check refuses (nobody logged in, a form without its CSRF token, not an
    admin, not an item id, not the viewer's item ...): ``response`` is the answer that says why,
    and the console answers with it as it is (:func:`answer_refused`), not as an API error."""

    code = "console_refused"

    def __init__(self, response: Response) -> None:
        super().__init__(f"refused with {response.status_code}")
        self.response = response
        self.http_status = response.status_code

    @property
    def status_code(self) -> int:
        return self.response.status_code


async def answer_refused(request: Request, exc: Exception) -> Response:
    """The service's handler of :class:`Refused`: its answer."""
    assert isinstance(exc, Refused)
    return exc.response


def local(target: str) -> str:
    """Only a path of the console is a place to go after a form (no open redirect)."""
    return target if target.startswith(PREFIX) and not target.startswith("//") else PREFIX
