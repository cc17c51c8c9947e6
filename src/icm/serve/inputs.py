"""Images as requests carry them: an upload's bytes, a base64 data URL, or (only for hosts an
operator allowed) an https URL fetched with a size and time limit."""

from __future__ import annotations

import base64
import binascii
import re
import urllib.request
from urllib.parse import urlsplit

from icm.errors import InputError
from icm.serve.errors import PayloadTooLarge

_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,", re.I)


class BadImageUrl(InputError):
    code = "bad_image_url"


class RemoteUrlRefused(InputError):
    http_status = 400
    code = "remote_url_refused"


def decode_data_url(url: str, max_bytes: int) -> bytes:
    """The bytes of ``data:image/...;base64,...``."""
    match = _DATA_URL.match(url)
    if match is None:
        raise BadImageUrl("the image is not a data URL (data:image/png;base64,...)")
    if not match["b64"]:
        raise BadImageUrl("the data URL must be base64-encoded (data:image/png;base64,...)")
    payload = url[match.end():]
    if len(payload) * 3 // 4 > max_bytes:
        raise PayloadTooLarge(f"the image is larger than the limit of {max_bytes:,} bytes")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadImageUrl(f"the data URL's base64 is malformed: {exc}") from exc


def image_from_url(url: str, *, max_bytes: int, allowed_hosts: list[str], timeout: float) -> tuple[bytes, str]:
    """(bytes, name) of an image given as a data URL or an allowed https URL."""
    if url.startswith("data:"):
        return decode_data_url(url, max_bytes), "<data-url>"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadImageUrl("an image URL is a data URL (data:image/...;base64,...) or an https URL")
    if parts.hostname not in allowed_hosts:
        raise RemoteUrlRefused(
            f"this service does not fetch images from {parts.hostname}: send the image as a data URL "
            "or an upload (an operator may allow hosts with ICM_URL_HOSTS)"
        )
    return _fetch(url, max_bytes, timeout), url


def _fetch(url: str, max_bytes: int, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "icm-serve"})
    try:
        # no redirects to other hosts: the opener below refuses them
        with _OPENER.open(request, timeout=timeout) as response:
            data: bytes = response.read(max_bytes + 1)
    except OSError as exc:
        raise BadImageUrl(f"cannot fetch {url}: {exc}") from exc
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the image at {url} is larger than the limit of {max_bytes:,} bytes")
    return data


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)
