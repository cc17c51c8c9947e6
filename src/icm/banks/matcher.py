"""Matching an image's hashes against banks: the indexes of every bank of a store, loaded once,
kept up to date as entries are added (appended to the index) or removed (that bank reloaded).

One :class:`BankMatcher` per process and store is enough: it is thread-safe, and the Moderator,
the service's workers and the HMA endpoints share it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from icm.banks.index import ExactIndex, PdqIndex
from icm.banks.model import BankConfig, BankEntry, BankNotFound, Match, SignalType
from icm.banks.store import BankStore, Mark
from icm.results import Hashes


@dataclass
class _Loaded:
    config: BankConfig
    index: PdqIndex | ExactIndex
    entries: list[BankEntry] = field(default_factory=list)
    mark: Mark | None = None


@dataclass(frozen=True)
class Found:
    """One entry of a bank that a hash is within the bank's distance of."""

    bank: BankConfig
    entry: BankEntry
    distance: int


class BankMatcher:
    """The banks of a store, indexed. ``refresh_s``: how old the view of the store may be before a
    match reads what was added or removed since (0: read before every match; the reads are of what
    is new only, so they are cheap)."""

    def __init__(self, store: BankStore, *, names: Iterable[str] | None = None, refresh_s: float = 0.0) -> None:
        self.store = store
        self.names = sorted(set(names)) if names is not None else None
        self.refresh_s = refresh_s
        self._banks: dict[str, _Loaded] = {}
        self._lock = threading.Lock()
        self._refreshed = float("-inf")
        self.load_ms = 0.0

    # -- keeping up with the store ------------------------------------------------------------

    def refresh(self, force: bool = False) -> None:
        """Read what changed in the store since the last look (every bank's new entries; a bank
        with a removal, a new bank or a changed configuration is reloaded whole)."""
        if not force and time.monotonic() - self._refreshed < self.refresh_s:
            return
        with self._lock:
            started = time.perf_counter()
            names = self.store.names() if self.names is None else self.names
            # built aside and swapped in whole: a match in another thread sees the old view or the new
            banks = {name: loaded for name, loaded in self._banks.items() if name in names}
            for name in names:
                try:
                    bank = self.store.get(name)
                except BankNotFound:
                    if self.names is not None:
                        raise
                    banks.pop(name, None)
                    continue
                loaded = banks.get(name)
                config = bank.config
                if loaded is not None and loaded.config != config:
                    loaded = None
                entries, mark, whole = bank.read(None if loaded is None else loaded.mark)
                if loaded is None or whole:
                    loaded = _Loaded(config, _empty_index(config))
                    banks[name] = loaded
                # the entries before the index: a search never finds a position without its entry
                loaded.entries.extend(entries)
                loaded.index.add([e.hash for e in entries])
                loaded.mark = mark
            self._banks = banks
            self._refreshed = time.monotonic()
            if not self.load_ms:
                self.load_ms = round((time.perf_counter() - started) * 1000, 2)

    def configs(self) -> list[BankConfig]:
        self.refresh()
        return [loaded.config for loaded in self._banks.values()]

    @property
    def dihedral(self) -> bool:
        """Whether some bank matches rotated and mirrored copies (the image needs its eight
        dihedral hashes). Refreshes only a matcher that has not loaded yet: the match that follows
        reads what changed."""
        if self._refreshed == float("-inf"):
            self.refresh()
        return any(b.config.dihedral for b in self._banks.values())

    def __len__(self) -> int:
        """Entries in all banks."""
        return sum(len(b.entries) for b in self._banks.values())

    # -- looking up ---------------------------------------------------------------------------

    def lookup(self, signal: SignalType, hashes: Sequence[str], banks: Iterable[str] | None = None,
               ) -> dict[str, list[Found]]:
        """Per bank of that signal type, every entry within its distance of any of ``hashes``
        (nearest first, one per content id). No quality check: the caller gives hashes it trusts."""
        self.refresh()
        wanted = set(banks) if banks is not None else None
        out: dict[str, list[Found]] = {}
        for name, loaded in sorted(self._banks.items()):
            if loaded.config.signal is not signal or (wanted is not None and name not in wanted):
                continue
            best: dict[str, Found] = {}
            for found in loaded.index.search(list(hashes)):
                for position, distance in found:
                    entry = loaded.entries[position]
                    held = best.get(entry.content_id)
                    if held is None or distance < held.distance:
                        best[entry.content_id] = Found(loaded.config, entry, distance)
            if best:
                out[name] = sorted(best.values(), key=lambda f: (f.distance, f.entry.content_id))
        return out

    def match(self, hashes: Hashes, sha256: str | None) -> list[Match]:
        """The matches of an image (its hashes and sha256) in every bank: per bank and content id
        the nearest. A frame whose PDQ quality is below a bank's floor never matches that bank."""
        self.refresh()
        matches: list[Match] = []
        for name, loaded in sorted(self._banks.items()):
            config = loaded.config
            queries: list[str] = []
            where: list[tuple[int, int]] = []  # (frame, dihedral copy) of each query
            if config.signal is SignalType.pdq:
                for frame, (pdq, quality) in enumerate(zip(hashes.pdq, hashes.quality, strict=True)):
                    if quality < config.quality_floor:
                        continue
                    copies = hashes.dihedral[frame] if config.dihedral and hashes.dihedral else [pdq]
                    queries.extend(copies)
                    where.extend((frame, copy) for copy in range(len(copies)))
            elif config.signal is SignalType.md5 and hashes.md5:
                queries, where = [hashes.md5], [(0, 0)]
            elif config.signal is SignalType.sha256 and sha256:
                queries, where = [sha256], [(0, 0)]
            best: dict[str, Match] = {}
            for (frame, copy), found in zip(where, loaded.index.search(queries), strict=True):
                for position, distance in found:
                    entry = loaded.entries[position]
                    held = best.get(entry.content_id)
                    if held is None or (distance, copy) < (held.distance, held.dihedral):
                        best[entry.content_id] = Match(
                            bank=name, kind=config.kind, rules=tuple(config.rules), content_id=entry.content_id,
                            distance=distance, frame=frame, dihedral=copy,
                            dsa_category=entry.dsa_category or config.dsa_category)
            matches.extend(sorted(best.values(), key=lambda m: (m.distance, m.content_id)))
        return matches


def _empty_index(config: BankConfig) -> PdqIndex | ExactIndex:
    return PdqIndex(config.distance) if config.signal is SignalType.pdq else ExactIndex()
