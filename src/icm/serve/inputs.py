"""Images as requests carry them: an upload's bytes or a base64 data URL (an URL of a host an
operator allowed is fetched by :mod:`icm.serve.fetch`), and the errors of image URLs."""

from __future__ import annotations

import base64
import binascii
import re

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
