"""The counts a DSA transparency report needs (Articles 15 and 24) for one period: decisions by
category, by restriction, by automation and by source, the median time from upload to decision,
and appeals received, decided and overturned."""

from __future__ import annotations

import csv
import io
import re
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from pydantic import BaseModel, Field

from icm.dsa.made import Made
from icm.errors import InputError


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """``2026``, ``2026-H2``, ``2026-Q3`` or ``2026-11`` -> [start, end) in UTC."""
    text = period.strip().upper()
    match = re.fullmatch(r"(\d{4})(?:-(H[12]|Q[1-4]|\d{2}))?", text)
    if match is None:
        raise InputError(f"bad period {period!r}: write YEAR, YEAR-H1/H2, YEAR-Q1..Q4 or YEAR-MM (e.g. 2026-H2)")
    year, part = int(match.group(1)), match.group(2)
    if part is None:
        first, months = 1, 12
    elif part.startswith("H"):
        first, months = 1 + 6 * (int(part[1]) - 1), 6
    elif part.startswith("Q"):
        first, months = 1 + 3 * (int(part[1]) - 1), 3
    else:
        first, months = int(part), 1
        if not 1 <= first <= 12:
            raise InputError(f"bad month in period {period!r}")
    end_month = first + months
    start = datetime(year, first, 1, tzinfo=UTC)
    end = datetime(year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 1, tzinfo=UTC)
    return start, end


@dataclass(frozen=True)
class AppealRecord:
    """An appeal: when it came and when it was decided, and whether the decision changed."""

    received_at: datetime
    decided_at: datetime | None
    overturned: bool


class AppealCounts(BaseModel):
    received: int = 0
    decided: int = 0
    overturned: int = Field(0, description="decided with a decision other than the one appealed against")


class TransparencyReport(BaseModel):
    period: str
    start: date
    end: date = Field(description="the day after the period")
    decisions: int = Field(description="statements of reasons whose decision falls in the period")
    invalid: int = Field(0, description="decisions whose statement fails the database's rules (not counted below)")
    by_category: dict[str, int]
    by_restriction: dict[str, int]
    by_automation: dict[str, int]
    by_source: dict[str, int]
    own_initiative: int
    notices: int
    median_hours_to_decision: float | None = Field(description="from upload to decision, over the period's decisions")
    appeals: AppealCounts

    def csv(self) -> str:
        """``section,key,count`` rows."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["section", "key", "count"])
        writer.writerow(["period", self.period, ""])
        writer.writerow(["decisions", "total", self.decisions])
        writer.writerow(["decisions", "invalid", self.invalid])
        for section in ("by_category", "by_restriction", "by_automation", "by_source"):
            for key, count in getattr(self, section).items():
                writer.writerow([section, key, count])
        writer.writerow(["source", "own_initiative", self.own_initiative])
        writer.writerow(["source", "notices", self.notices])
        median = self.median_hours_to_decision
        writer.writerow(["time", "median_hours_to_decision", "" if median is None else f"{median:.2f}"])
        for key, count in self.appeals.model_dump().items():
            writer.writerow(["appeals", key, count])
        return out.getvalue()


def transparency_report(period: str, made: Iterable[Made], appeals: Iterable[AppealRecord]) -> TransparencyReport:
    start, end = period_bounds(period)

    def within(moment: datetime | None) -> bool:
        return moment is not None and start <= _aware(moment) < end

    chosen = [m for m in made if within(m.decided_at)]
    valid = [m.statement for m in chosen if m.statement is not None]
    categories: Counter[str] = Counter()
    restrictions: Counter[str] = Counter()
    for statement in valid:
        categories[statement.category] += 1
        restrictions.update(statement.decision_visibility or [])
    sources = Counter(s.source_type for s in valid)
    hours = [(_aware(m.decided_at) - _aware(m.uploaded_at)).total_seconds() / 3600 for m in chosen
             if m.statement is not None]
    counts = AppealCounts()
    for appeal in appeals:
        counts.received += within(appeal.received_at)
        if within(appeal.decided_at):
            counts.decided += 1
            counts.overturned += appeal.overturned
    return TransparencyReport(
        period=period.strip().upper(), start=start.date(), end=end.date(), decisions=len(valid),
        invalid=len(chosen) - len(valid),
        by_category=dict(sorted(categories.items())), by_restriction=dict(sorted(restrictions.items())),
        by_automation=dict(sorted(Counter(s.automated_decision for s in valid).items())),
        by_source=dict(sorted(sources.items())),
        own_initiative=sources.get("SOURCE_VOLUNTARY", 0), notices=len(valid) - sources.get("SOURCE_VOLUNTARY", 0),
        median_hours_to_decision=round(statistics.median(hours), 3) if hours else None, appeals=counts,
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
