"""The method shown learning, at CI size: `benchmarks/rule_following.py --ci` runs data -> train ->
moderate -> eval on the synthetic shapes world (a fixed seed), and the model trained on two rule
sets with the rule in the prompt follows the rule text it is given.

Sized for CI (about 90 s of CPU time, about 2 minutes of wall time on 2 shared cores): 240 train
images, the vision tower taught the world's attributes (600 steps), the LLaVA trained 400 steps on
the `adults` and `kids` rule sets, the all-sets model judged with and without the rule text (no
untrained, one-set or held-out rows: the full run has them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "rule_following.py"
#: the rule set the assertions are most about: without the rule text the model cannot tell its
#: background rule ("The background must be light.") from the set's other two rules (every rule is
#: then asked the same question), and the background it forbids is the one kids' text rule allows
JUDGED = "adults"
BACKGROUND_RULE = "light-only"


def test_the_ci_run_learns_to_follow_the_rule_text(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(BENCHMARK), "--ci", "--json", "--work", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout)
    rows = {(r["model"], r["rule_set"]): r for r in result["rows"]}
    assert result["seed"] == 0 and result["prompts_checked"] > 0
    assert set(rows) == {(m, s) for m in ("all-sets", "all-sets-no-rule-text") for s in ("adults", "kids")}
    assert not any(r["held_out"] for r in result["rows"])
    assert all(r["coverage"] == 1.0 for r in result["rows"])  # every (image, rule) pair was judged

    # chance: each rule answered with its more frequent verdict on the test images (0.66 and 0.68 here)
    trained = rows[("all-sets", JUDGED)]
    assert trained["accuracy"] >= trained["chance"] + 0.2, result["rows"]  # measured: 0.967 vs 0.656
    assert trained["roc_auc"] >= 0.9, result["rows"]  # measured: 0.992
    assert trained["per_rule"][BACKGROUND_RULE] >= 0.9, result["rows"]  # measured: 1.00
    kids = rows[("all-sets", "kids")]
    assert kids["accuracy"] >= kids["chance"] + 0.1, result["rows"]  # measured: 0.906 vs 0.683

    # the rule text withheld at inference: the same model, every rule asked "Rule text withheld."
    withheld = rows[("all-sets-no-rule-text", JUDGED)]
    assert withheld["accuracy"] <= trained["accuracy"] - 0.25, result["rows"]  # measured: 0.511
    assert withheld["per_rule"][BACKGROUND_RULE] <= trained["per_rule"][BACKGROUND_RULE] - 0.2, result["rows"]
    assert rows[("all-sets-no-rule-text", "kids")]["accuracy"] <= kids["accuracy"] - 0.15, result["rows"]  # 0.639
