"""icm.backends.packing: how rule suffixes are packed into rows (the kernel itself is held to
full forward passes in test_transformers.py, on a tiny model)."""

from __future__ import annotations

from icm.backends.packing import pack_rows


def test_pack_rows_balances_rows_and_keeps_every_suffix_once() -> None:
    lengths = [70, 100, 58, 115, 63, 72, 90, 12]
    rows = pack_rows(lengths)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert rows == [[3, 5, 0, 7], [1, 6, 4, 2]]  # about four per row, longest first to the shortest row
    widths = [sum(lengths[i] for i in row) for row in rows]
    assert widths == [269, 311]  # padded to 311: 7 % of the row space is padding
    suffixes = [71, 101, 59, 116, 64, 69, 69, 48, 61, 66, 62, 53, 80, 71, 101, 59]  # 16 rules of the benchmark
    sixteen = pack_rows(suffixes)
    assert len(sixteen) == 4
    filled = [sum(suffixes[i] for i in row) for row in sixteen]
    assert max(filled) - min(filled) <= min(suffixes)  # rows differ by less than one suffix
    assert pack_rows([5]) == [[0]]
    assert pack_rows([]) == []
