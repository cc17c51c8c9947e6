"""Evaluation: verdict accuracy (ICM accuracy), Q-A accuracy (MQA), explanation quality (MEQ).

>>> from icm.evaluate import evaluate_files, write_verdict_report        # doctest: +SKIP
>>> evaluation = evaluate_files("results.jsonl", "labels.jsonl")         # doctest: +SKIP
>>> write_verdict_report([evaluation], "report/")                        # doctest: +SKIP

Heavy packages (matplotlib, torch, openai, rouge-score, sacrebleu) load only when a function
that needs them runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "EvalInputError",
    "Judge",
    "JudgeScores",
    "evaluate_files",
    "evaluate_meq",
    "evaluate_mqa",
    "evaluate_outcomes",
    "load_judgements",
    "write_meq_report",
    "write_verdict_report",
]

if TYPE_CHECKING:
    from icm.evaluate.meq import Judge, JudgeScores, evaluate_meq, load_judgements
    from icm.evaluate.mqa import evaluate_mqa
    from icm.evaluate.records import EvalInputError
    from icm.evaluate.report import write_meq_report, write_verdict_report
    from icm.evaluate.verdicts import evaluate_files, evaluate_outcomes

_LAZY = {
    "EvalInputError": "icm.evaluate.records",
    "Judge": "icm.evaluate.meq",
    "JudgeScores": "icm.evaluate.meq",
    "evaluate_meq": "icm.evaluate.meq",
    "load_judgements": "icm.evaluate.meq",
    "evaluate_mqa": "icm.evaluate.mqa",
    "write_meq_report": "icm.evaluate.report",
    "write_verdict_report": "icm.evaluate.report",
    "evaluate_files": "icm.evaluate.verdicts",
    "evaluate_outcomes": "icm.evaluate.verdicts",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'icm.evaluate' has no attribute {name!r}")
