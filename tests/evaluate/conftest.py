"""Fixtures for the evaluation tests (pytest fixtures only: test modules import nothing from here,
so they work under any import mode)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# the same folder as ICM_RELEASE in tests/conftest.py
RELEASE = Path(__file__).resolve().parents[1] / "fixtures" / "icm_release"


@pytest.fixture
def release() -> Path:
    return RELEASE


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[[str, list[Any]], Path]:
    """Write rows (dicts, or raw strings for malformed lines) as a JSONL file in tmp_path."""

    def write(name: str, rows: list[Any]) -> Path:
        path = tmp_path / name
        path.write_text(
            "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), "utf-8"
        )
        return path

    return write


def _result(image: str, *verdicts: tuple[str, str, float | None], error: bool = False) -> dict:
    return {
        "image": image,
        "verdicts": [{"rule_id": r, "verdict": v, "probability": p} for r, v, p in verdicts],
        "error": {"code": "not_found", "message": "gone"} if error else None,
    }


@pytest.fixture
def result() -> Callable[..., dict]:
    """A minimal ModerationResult line: result(image, (rule_id, verdict, probability), ...)."""
    return _result
