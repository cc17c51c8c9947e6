"""The method shown learning, at CI size: `benchmarks/rule_following.py --quick` runs data -> train
-> moderate -> eval on the synthetic shapes world (a fixed seed), and the model trained on every
rule set with the rule in the prompt follows the rule text it is given."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "rule_following.py"
#: rule sets of the world whose rules the rule text decides (without it every rule of the set is
#: asked the same question, so the rules' answers cannot all be right)
TRAINED = ("kids", "teens", "adults")


def test_the_quick_run_learns_to_follow_the_rule_text(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(BENCHMARK), "--quick", "--json", "--work", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout)
    rows = {(r["model"], r["rule_set"]): r for r in result["rows"]}
    assert result["seed"] == 0 and result["prompts_checked"] > 0
    assert {m for m, _ in rows} == {"untrained", "one-set:kids", "all-sets", "all-sets-no-rule-text"}
    assert not rows[("all-sets", "kids")]["held_out"] and rows[("all-sets", "newcomers")]["held_out"]
    assert all(r["coverage"] == 1.0 for r in result["rows"])  # every (image, rule) pair was judged

    # chance: each rule answered with its more frequent verdict on the test images
    best = max(TRAINED, key=lambda s: rows[("all-sets", s)]["accuracy"] - rows[("all-sets", s)]["chance"])
    trained = rows[("all-sets", best)]
    assert trained["accuracy"] >= trained["chance"] + 0.1, result["rows"]
    assert trained["roc_auc"] >= 0.75, result["rows"]
    withheld = rows[("all-sets-no-rule-text", best)]
    assert withheld["accuracy"] <= trained["accuracy"] - 0.05, result["rows"]
