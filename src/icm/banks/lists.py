"""Plain hash lists, as HMA and python-threatexchange exchange them: one hash per line, with an
optional content id and labels, comma-separated (CSV).

    f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22,case-1432,nudity reported
    e64cc9d91c623882f8d1f1d9a398e78c9f199b3bd83924f2b7e11e0bf861b064

Labels are separated by spaces. A line may also start with the signal type, as
python-threatexchange's file exchange writes it (``pdq f8f8f0...``). Blank lines, ``#`` comments
and a header line (``hash,content_id,labels``) are skipped. A line without a content id gets the
hash as its id. A malformed line refuses the whole list, naming the line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from icm.banks.model import BankEntry, BankError, SignalType, check_hash

HEADER = ("hash", "content_id", "labels")


def parse_list(text: str, signal: SignalType, *, source: str = "<list>", added_by: str | None = None,
               ) -> list[BankEntry]:
    """The entries of a hash list of one signal type; BankError naming the first bad line."""
    entries = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), 1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and tuple(c.lower() for c in cells[: len(HEADER)]) == HEADER[: len(cells)]:
            continue
        if len(cells) > len(HEADER):
            raise BankError(f"{source} line {number}: {len(cells)} fields; a line is "
                            "hash[,content_id[,labels]]")
        first = cells[0].split()
        if len(first) == 2 and first[0].lower() in {s.value for s in SignalType}:
            if first[0].lower() != signal.value:
                raise BankError(f"{source} line {number}: a {first[0]} hash in a {signal.value} bank")
            first = first[1:]
        if len(first) != 1:
            raise BankError(f"{source} line {number}: {cells[0]!r} is not one {signal.value} hash")
        try:
            value = check_hash(signal, first[0])
        except ValueError as exc:
            raise BankError(f"{source} line {number}: {exc}") from exc
        content_id = cells[1] if len(cells) > 1 and cells[1] else value
        labels = cells[2].split() if len(cells) > 2 else []
        entries.append(BankEntry(content_id=content_id, hash=value, labels=labels, added_by=added_by,
                                 source=source))
    return entries


def list_lines(entries: Iterable[BankEntry]) -> Iterator[str]:
    """The lines of a hash list (no header: a reader of bare hashes takes the first field)."""
    for entry in entries:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow([entry.hash, entry.content_id, " ".join(entry.labels)])
        yield buffer.getvalue()
