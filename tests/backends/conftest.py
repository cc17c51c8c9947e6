"""Fixtures for the model backends: test images (the tiny LLaVA is in the root conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples" / "images"


@pytest.fixture
def astronaut() -> Path:
    return EXAMPLES / "astronaut.jpg"
