"""The service's log lines: JSON objects for a log collector, or plain lines for a person at a
terminal, both with the request id of the request being served."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from typing import Any, Literal, TextIO

#: the id of the request being served, set by the middleware for every line logged while serving it
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("icm_request_id", default=None)

LogFormat = Literal["auto", "json", "text"]

# attributes every LogRecord has, and uvicorn's colour-coded copy of its message
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "color_message"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """What a caller passed in ``extra=``, beside the standard attributes."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def _request_id(record: logging.LogRecord) -> str | None:
    return getattr(record, "request_id", None) or REQUEST_ID.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, with the request id of the request being served."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _request_id(record),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """One line a person reads: time, level, logger, message, then ``key=value`` for the fields
    (the request id among them), with no colour codes."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        fields.setdefault("request_id", _request_id(record))
        pairs = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        line = (f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} {record.levelname.lower():<7} "
                f"{record.name}: {record.getMessage()}" + (f"  {pairs}" if pairs else ""))
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def formatter(log_format: LogFormat, stream: TextIO) -> logging.Formatter:
    """``auto`` is text on a terminal and JSON lines otherwise (a file, a pipe, a log collector)."""
    if log_format == "auto":
        log_format = "text" if stream.isatty() else "json"
    return TextFormatter() if log_format == "text" else JsonFormatter()


def configure_logging(level: str, log_format: LogFormat = "auto", stream: TextIO | None = None) -> None:
    """Log lines on ``stream`` (stderr) for icm's own loggers and uvicorn's."""
    stream = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(log_format, stream))
    for name in ("icm", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
