"""The examples stay runnable: their policies load, their files exist, the API script runs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from icm.policy import load_policy
from icm.policy.categories import load_label_map

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_example_policies_load() -> None:
    for path in sorted((EXAMPLES / "policies").glob("*.yaml")):
        assert load_policy(path).rules, path


def test_labels_manifest_and_label_map_point_at_real_images() -> None:
    general = load_policy("general")
    for line in (EXAMPLES / "labels.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert (EXAMPLES / row["image"]).is_file() and general.rule(row["rule_id"])
    label_map = load_label_map(EXAMPLES / "label-map.yaml")
    criteria = {c.id for r in general.rules for c in r.criteria}
    with (EXAMPLES / "data-manifest.csv").open() as handle:
        for row in csv.DictReader(handle):
            assert (EXAMPLES / row["image"]).is_file()
            assert set(label_map[row["label"]]) <= criteria


def test_python_api_example_runs(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(EXAMPLES / "python_api.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "scam-flyer.png: block" in done.stdout
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 4
