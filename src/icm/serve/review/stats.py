"""Quality of the queue's decisions: agreement per rule (Cohen's kappa between two reviewers of a
double-reviewed item, and between the model and the reviewers), the model's confusion against
reviewers per rule, throughput per reviewer and the queue's age; plots as SVG (matplotlib)."""

from __future__ import annotations

import io
import math
import statistics
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from icm.serve.store.models import utcnow
from icm.serve.store.reviews import ReviewStore

LABELS = ["violates", "complies"]
MODEL_VERDICTS = ["violates", "complies", "uncertain"]


@dataclass
class RuleStats:
    rule_id: str
    pairs: int = 0  # double reviews where both reviewers labelled the rule
    reviewer_agreement: float | None = None
    reviewer_kappa: float | None = None
    judged: int = 0  # reviewer labels where the model said violates or complies
    model_agreement: float | None = None
    model_kappa: float | None = None
    # confusion[model verdict][reviewer label]
    confusion: dict[str, dict[str, int]] = field(
        default_factory=lambda: {m: dict.fromkeys(LABELS, 0) for m in MODEL_VERDICTS}
    )


@dataclass
class Throughput:
    user_id: str
    total: int
    last_day: int
    last_week: int
    changed: int  # decisions that differ from the model's


@dataclass
class Stats:
    rules: list[RuleStats]
    reviewers: list[Throughput]
    open_items: int
    oldest_hours: float | None
    median_hours: float | None
    ages_hours: list[float]
    reviews: int


def kappa(first: list[str], second: list[str]) -> float | None:
    """Cohen's kappa of two label lists; None when it is undefined (fewer than two items, or
    both raters gave one label throughout)."""
    from sklearn.metrics import cohen_kappa_score

    if len(first) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(cohen_kappa_score(first, second, labels=LABELS))
    return None if math.isnan(value) else value


def compute_stats(reviews: ReviewStore, now: datetime | None = None) -> Stats:
    now = now or utcnow()
    current = reviews.current_reviews()
    results = reviews.results_by_id(sorted({review.result_id for review, _ in current}))
    by_item: dict[int, list[dict[str, str]]] = defaultdict(list)
    model_pairs: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    rules: dict[str, RuleStats] = {}
    for review, item in current:
        if item.kind != "appeal":
            by_item[item.id].append(review.labels)
        row = results.get(review.result_id)
        stored: list[dict[str, Any]] = list(row.result.get("verdicts", [])) if row else []  # type: ignore[call-overload]
        verdicts = {v["rule_id"]: v["verdict"] for v in stored}
        for rule_id, label in review.labels.items():
            stats = rules.setdefault(rule_id, RuleStats(rule_id))
            model = verdicts.get(rule_id)
            if model in MODEL_VERDICTS and label in LABELS:
                stats.confusion[model][label] += 1
                if model != "uncertain":
                    model_pairs[rule_id][0].append(model)
                    model_pairs[rule_id][1].append(label)
    reviewer_pairs: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for labelled in by_item.values():
        if len(labelled) < 2:
            continue
        first, second = labelled[0], labelled[1]
        for rule_id in sorted(set(first) & set(second)):
            reviewer_pairs[rule_id][0].append(first[rule_id])
            reviewer_pairs[rule_id][1].append(second[rule_id])
    for rule_id, (a, b) in reviewer_pairs.items():
        stats = rules.setdefault(rule_id, RuleStats(rule_id))
        stats.pairs = len(a)
        stats.reviewer_agreement = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
        stats.reviewer_kappa = kappa(a, b)
    for rule_id, (model, human) in model_pairs.items():
        stats = rules[rule_id]
        stats.judged = len(model)
        stats.model_agreement = sum(x == y for x, y in zip(model, human, strict=True)) / len(model)
        stats.model_kappa = kappa(model, human)

    every = reviews.reviews()
    total: Counter[str] = Counter()
    day: Counter[str] = Counter()
    week: Counter[str] = Counter()
    changed: Counter[str] = Counter()
    decisions = {row_id: row.decision for row_id, row in results.items()}
    for review in every:
        total[review.user_id] += 1
        at = review.created_at
        if at >= now - timedelta(days=1):
            day[review.user_id] += 1
        if at >= now - timedelta(days=7):
            week[review.user_id] += 1
        if decisions.get(review.result_id) not in (None, review.action):
            changed[review.user_id] += 1
    reviewers = [Throughput(user, total[user], day[user], week[user], changed[user]) for user in sorted(total)]

    ages = sorted((now - created).total_seconds() / 3600 for created in reviews.queue_ages())
    return Stats(
        rules=sorted(rules.values(), key=lambda r: r.rule_id), reviewers=reviewers, open_items=len(ages),
        oldest_hours=ages[-1] if ages else None, median_hours=statistics.median(ages) if ages else None,
        ages_hours=ages, reviews=len(every),
    )


def plots(stats: Stats, names: dict[str, str] | None = None) -> dict[str, str]:
    """SVG plots (inline markup) of agreement per rule, throughput per reviewer and queue age."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = names or {}
    out: dict[str, str] = {}

    def svg(figure: object) -> str:
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", bbox_inches="tight")  # type: ignore[attr-defined]
        plt.close(figure)  # type: ignore[arg-type]
        text = buffer.getvalue()
        return text[text.index("<svg"):]

    if stats.rules:
        figure, axes = plt.subplots(figsize=(6, 0.5 + 0.4 * len(stats.rules)))
        ids = [r.rule_id for r in stats.rules]
        positions = range(len(ids))
        axes.barh([p + 0.2 for p in positions], [r.model_kappa or 0 for r in stats.rules], 0.4,
                  label="model-reviewer")
        axes.barh([p - 0.2 for p in positions], [r.reviewer_kappa or 0 for r in stats.rules], 0.4,
                  label="reviewer-reviewer")
        axes.set_yticks(list(positions), ids)
        axes.set_xlim(-1, 1)
        axes.set_xlabel("Cohen's kappa (undefined shown as 0)")
        axes.legend(loc="lower right", fontsize="small")
        out["agreement"] = svg(figure)
    if stats.reviewers:
        figure, axes = plt.subplots(figsize=(6, 0.5 + 0.4 * len(stats.reviewers)))
        who = [names.get(r.user_id, r.user_id) for r in stats.reviewers]
        axes.barh(who, [r.last_week for r in stats.reviewers], label="last 7 days")
        axes.barh(who, [r.last_day for r in stats.reviewers], label="last 24 h")
        axes.set_xlabel("decisions")
        axes.legend(loc="lower right", fontsize="small")
        out["throughput"] = svg(figure)
    if stats.ages_hours:
        figure, axes = plt.subplots(figsize=(6, 2.5))
        axes.hist(stats.ages_hours, bins=min(20, max(1, len(stats.ages_hours))))
        axes.set_xlabel("hours in the queue")
        axes.set_ylabel("open items")
        out["queue_age"] = svg(figure)
    return out
