"""What a request may hand the store: whole numbers in ASCII digits within the range of the
column they meet, and text the store can hold (no NUL, which PostgreSQL refuses; valid UTF-8). The one check for
every integer or identifier a path, a query or a body brings (policy versions, ids, cursors)."""

from __future__ import annotations

import re

from icm.errors import InputError

INT_MAX = 2**31 - 1
"""The largest value of an INTEGER column (policy versions, counts; 32-bit on PostgreSQL)."""
BIGINT_MAX = 2**63 - 1
"""The largest value of a BIGINT column (sequence numbers and queue item ids)."""

# ASCII only: str.isdigit() also takes superscripts (³, which int() refuses) and other scripts'
# digits (٣, which int() reads as 3)
_DIGITS = re.compile(r"[0-9]+")


class OutOfRange(InputError):
    """A number the store cannot hold, or text it cannot store; the answer is 400, never a lookup."""

    code = "out_of_range"


def parse_int(text: str, what: str, *, low: int = 1, high: int = INT_MAX) -> int:
    """``text`` as an int in ``[low, high]``: ASCII digits only (400 otherwise)."""
    if not _DIGITS.fullmatch(text):
        raise InputError(f"{what} must be a whole number in the digits 0-9, not {text!r}")
    if len(text) > 30:  # far beyond any column; int() of a huge string is slow
        raise OutOfRange(f"{what} {text[:30]}... is out of range ({low}..{high})")
    return check_int(int(text), what, low=low, high=high)


def check_int(value: int, what: str, *, low: int = 1, high: int = INT_MAX) -> int:
    """``value`` when it lies in ``[low, high]``; 400 (out_of_range) otherwise."""
    if not low <= value <= high:
        raise OutOfRange(f"{what} {value} is out of range ({low}..{high})")
    return value


def is_int(text: str) -> bool:
    """Whether ``text`` is a whole number in ASCII digits (for headers, where no error is raised)."""
    return _DIGITS.fullmatch(text) is not None


def check_text(value: str, what: str) -> str:
    """``value`` when the store can hold it: no NUL character (PostgreSQL's text refuses it) and
    no lone surrogate (not encodable as UTF-8)."""
    if "\x00" in value:
        raise InputError(f"{what} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{what} is not valid Unicode (a lone surrogate)") from None
    return value
