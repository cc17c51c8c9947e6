"""Errors that only the HTTP service raises; each derives from its branch of :mod:`icm.errors`
and carries the status code and machine-readable code the one exception handler answers with."""

from __future__ import annotations

from icm.errors import IcmError, InputError, ModelError, ModelOutputError, ModelTimeout


class _RetryLater(IcmError):
    """An error whose answer tells the caller to retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Recorded(IcmError):
    """An error of one image whose error record is stored as ``result_id``."""

    def __init__(self, message: str, result_id: str | None) -> None:
        super().__init__(message)
        self.result_id = result_id


class Unauthorized(InputError):
    """No key, or a key that is unknown or revoked."""

    http_status = 401
    code = "unauthorized"


class Forbidden(InputError):
    """A valid key without the scope the endpoint needs."""

    http_status = 403
    code = "forbidden"


class NotFound(InputError):
    http_status = 404
    code = "not_found"


class Conflict(InputError):
    http_status = 409
    code = "conflict"


class PayloadTooLarge(InputError):
    http_status = 413
    code = "too_large"


class UnsupportedMediaType(InputError):
    http_status = 415
    code = "unsupported_media_type"


class RateLimited(_RetryLater, InputError):
    """The key sent more requests than its rate limit allows; retry after ``retry_after`` seconds."""

    http_status = 429
    code = "rate_limited"


class Overloaded(_RetryLater, ModelError):
    """Every worker is busy and the queue in front of them is full; retry after ``retry_after``."""

    http_status = 503
    code = "overloaded"


class NotReady(ModelError):
    http_status = 503
    code = "not_ready"


class StoreUnavailable(_RetryLater):
    """The store (the database) cannot be reached; the service goes on once it is back."""

    http_status = 503
    code = "store_unavailable"


class ImageRejected(_Recorded, InputError):
    """The image could not be judged because of what it is (empty, truncated, not an image, too
    small or too large); ``code`` is the result's :class:`~icm.results.ErrorCode`."""

    def __init__(self, code: str, message: str, result_id: str | None) -> None:
        super().__init__(message, result_id)
        self.code = code
        self.http_status = 413 if code == "too_large" else 400


class JudgeFailed(_Recorded, ModelError):
    """The backend failed on this image; the error record is stored as ``result_id``."""


class JudgeTimeout(_Recorded, ModelTimeout):
    """The judgement took longer than the request timeout; the error record is ``result_id``."""


class AnswerUnreadable(_Recorded, ModelOutputError):
    """The model's answer could not be read; the error record (with the raw answer) is ``result_id``."""


class TextNotSupported(InputError):
    """A request with text to judge: icm judges images."""

    code = "text_not_supported"
