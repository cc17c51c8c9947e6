"""The index of a bank's hashes: every entry within the bank's distance of a query, exactly.

PDQ hashes are indexed by multi-index hashing (faiss's ``IndexBinaryMultiHash``, the structure
python-threatexchange's PDQ index is built on): the 256 bits are cut into 16 chunks of 16 bits,
each chunk a hash table. Two hashes at distance ``d`` differ in at most ``d // 16`` bits of at
least one chunk (pigeonhole: 16 chunks each differing in more would make ``d`` larger), so probing
every chunk with ``nflip = d // 16`` flipped bits finds every entry within ``d``, then the full
distance is checked: the lookup is exact, not approximate (tests check it against a linear scan).

The index grows in place (``add``: no rebuild). Positions are the order entries were added in;
the caller keeps what each position stands for. Exact signals (md5, sha256) are a dictionary.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

PDQ_BITS = 256
#: 16 chunks of 16 bits: the chunk tables stay small (65,536 buckets) and a distance of 31 needs
#: one flipped bit per chunk (17 probes a chunk), python-threatexchange's own choice
CHUNKS = 16


def pdq_array(hashes: Sequence[str]) -> np.ndarray:
    """PDQ hex strings as an (n, 32) uint8 array, the bits in the order they are written."""
    if not hashes:
        return np.zeros((0, PDQ_BITS // 8), dtype=np.uint8)
    return np.frombuffer(bytes.fromhex("".join(hashes)), dtype=np.uint8).reshape(len(hashes), PDQ_BITS // 8)


class PdqIndex:
    """The PDQ hashes of one bank: ``search`` gives, per query, every (position, distance) within
    ``distance``. Thread-safe: adds and searches may come from several threads."""

    def __init__(self, distance: int, hashes: Sequence[str] = ()) -> None:
        import faiss

        if not 0 <= distance < PDQ_BITS:
            raise ValueError(f"a PDQ distance is 0-{PDQ_BITS - 1}, not {distance}")
        self.distance = distance
        self._index: Any = faiss.IndexBinaryMultiHash(PDQ_BITS, CHUNKS, PDQ_BITS // CHUNKS)
        self._index.nflip = distance // CHUNKS
        self._lock = threading.Lock()
        if hashes:
            self.add(hashes)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, hashes: Sequence[str]) -> None:
        """Append hashes; they take the next positions."""
        if hashes:
            vectors = pdq_array(hashes)
            with self._lock:
                self._index.add(vectors)

    def search(self, queries: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Per query, every (position, distance) with distance <= the index's, nearest first."""
        if not queries:
            return []
        if not len(self):
            return [[] for _ in queries]
        vectors = pdq_array(queries)
        with self._lock:
            # a binary range search keeps distances strictly below the radius
            limits, distances, positions = self._index.range_search(vectors, self.distance + 1)
        found = []
        for i in range(len(queries)):
            pairs = zip(positions[limits[i]:limits[i + 1]].tolist(),
                        distances[limits[i]:limits[i + 1]].tolist(), strict=True)
            found.append(sorted(((int(p), int(d)) for p, d in pairs), key=lambda pd: (pd[1], pd[0])))
        return found

    def memory_bytes(self) -> int:
        """About what the index holds in memory: the codes and, per chunk, one id per entry."""
        return len(self) * (PDQ_BITS // 8 + CHUNKS * 8)


def linear_search(hashes: np.ndarray, query: str, distance: int) -> list[tuple[int, int]]:
    """Every (position, distance) within ``distance`` by comparing with each hash in turn: the
    reference the index is tested and benchmarked against. ``hashes`` as :func:`pdq_array` gives."""
    xor = np.bitwise_xor(hashes, pdq_array([query])[0])
    distances = np.bitwise_count(np.ascontiguousarray(xor).view(np.uint64)).sum(axis=1, dtype=np.int64)
    positions = np.nonzero(distances <= distance)[0]
    return sorted(((int(p), int(distances[p])) for p in positions), key=lambda pd: (pd[1], pd[0]))


class ExactIndex:
    """The md5 or sha256 hashes of one bank: a query finds the positions of the same hash."""

    def __init__(self, hashes: Sequence[str] = ()) -> None:
        self._positions: dict[str, list[int]] = {}
        self._count = 0
        self._lock = threading.Lock()
        self.add(hashes)

    def __len__(self) -> int:
        return self._count

    def add(self, hashes: Sequence[str]) -> None:
        with self._lock:
            for value in hashes:
                self._positions.setdefault(value.lower(), []).append(self._count)
                self._count += 1

    def search(self, queries: Sequence[str]) -> list[list[tuple[int, int]]]:
        return [[(p, 0) for p in self._positions.get(q.lower(), [])] for q in queries]
