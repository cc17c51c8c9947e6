"""The one error tree of icm: every failure icm raises on purpose is an :class:`IcmError`.

Three branches say what went wrong, and so what a caller can do about it:

- :class:`InputError`: what the caller gave is wrong (a policy, a file, a flag, a request, an
  image). Fix the input; retrying the same input fails the same way.
- :class:`ModelError`: a backend or model could not do its work (a missing extra, a model that
  does not load, a server that is down or answers with an error). :class:`ModelTimeout` is the
  case where it did not answer in time. Retrying may help.
- :class:`ModelOutputError`: the model answered, but its answer cannot be read (not JSON, not the
  schema, no Yes/No). The raw answer is kept where there is one.

The CLI maps the classes to an exit status and a one-line message, the HTTP service to a status
code; both read the class attributes below, never the message.
"""

from __future__ import annotations


class IcmError(Exception):
    """Root of every error icm raises on purpose."""

    #: exit status of the CLI for this error
    exit_code: int = 2
    #: HTTP status of the service for this error
    http_status: int = 500
    #: a short machine-readable code (HTTP error bodies, logs)
    code: str = "error"


class InputError(IcmError, ValueError):
    """Bad input or usage: a malformed policy, file, flag, request or image."""

    http_status = 400
    code = "bad_input"


class ModelError(IcmError, RuntimeError):
    """A backend or model failed: not installed, not loadable, unreachable, or an error answer."""

    http_status = 502
    code = "model_error"


class ModelTimeout(ModelError, TimeoutError):
    """The model or its server did not answer in time."""

    http_status = 504
    code = "timeout"


class ModelOutputError(IcmError, ValueError):
    """The model answered, but the answer cannot be read (not JSON, not the schema, no Yes/No)."""

    http_status = 502
    code = "model_output"

    def __init__(self, message: str, raw: str | None = None) -> None:
        super().__init__(message)
        #: the model's answer(s) as received, for audit
        self.raw = raw
