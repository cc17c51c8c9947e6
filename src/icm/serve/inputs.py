"""Images as requests carry them: an upload's bytes or a base64 data URL (an URL of a host an
operator allowed is fetched by :mod:`icm.serve.fetch`), and the errors of image URLs."""

from __future__ import annotations

import base64
import binascii
import re

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

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


async def upload_form(request: Request, field: str, *, max_part_bytes: int, max_fields: int,
                      what: str = "") -> tuple[FormData, UploadFile]:
    """A multipart body with one file, in ``field``: the form and the upload; a body that does
    not parse, or has no such file, is a 400 (``what`` says what the field holds)."""
    try:
        form = await request.form(max_files=1, max_fields=max_fields, max_part_size=max_part_bytes)
    except Exception as exc:  # python-multipart's and Starlette's parse errors
        raise InputError(f"malformed multipart body: {exc}") from None
    upload = form.get(field)
    if not isinstance(upload, UploadFile):
        raise InputError(f"the multipart body needs a file field named {field!r}{what}")
    return form, upload
