"""Fixtures for the model backends: a tiny LLaVA saved once per session, test images."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples" / "images"


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from backends.tiny_vlm import save_tiny_llava

    return save_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture
def astronaut() -> Path:
    return EXAMPLES / "astronaut.jpg"
