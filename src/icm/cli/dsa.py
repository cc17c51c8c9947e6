"""``icm dsa``: EU DSA statements of reasons of the service's decisions: export them, submit them
to the Transparency Database, count them for a transparency report."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from icm.cli import output
from icm.cli.store import DB, opened, settings
from icm.errors import InputError

if TYPE_CHECKING:
    from icm.serve.statements import Statements
    from icm.serve.store import Store

app = typer.Typer(help="EU DSA statements of reasons of the service's decisions: export, submit, report.",
                  no_args_is_help=True)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

@contextmanager
def statements_of(db: str | None) -> Iterator[tuple[Statements, Store]]:
    """The store's statements, with the service's defaults (ICM_DSA_* variables); the store is
    opened as every command opens it (icm.cli.store) and closed at the end."""
    defaults = settings(db=db).statement_defaults()
    with opened(db) as store:
        from icm.serve.statements import Statements

        yield Statements(store, defaults), store


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"--since {value!r} is not a date: write YYYY-MM-DD") from None


@app.command("export", no_args_is_help=True)
def export(
    db: str = DB,
    out: Path = typer.Option(..., "--out", "-o", help="JSONL file to write: one statement per line."),
    since: str = typer.Option(None, "--since", help="Only decisions taken on this day (YYYY-MM-DD) or later.",
                              show_default=False),
) -> None:
    """Write the statements of reasons of every restricting decision, one JSON object per line, in
    the Transparency Database's submission form:

      icm dsa export --out statements.jsonl --since 2026-07-01
    """
    day = _day(since)
    written = invalid = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with statements_of(db) as (statements, _), out.open("w", encoding="utf-8") as file:
        for made in statements.all(day):
            if made.statement is None:
                invalid += 1
                errors.print(output.text(f"not valid, left out: {made.puid} (result {made.result_id}): "
                                         + "; ".join(made.problems)))
                continue
            file.write(json.dumps(made.statement.payload(), ensure_ascii=False) + "\n")
            written += 1
    line = f"wrote {written} statements of reasons to {out}"
    if invalid:
        line += f"; {invalid} left out: they fail the database's rules (listed above)"
    console.print(output.text(line), soft_wrap=True)


@app.command("submit", no_args_is_help=True)
def submit(
    db: str = DB,
    endpoint: str = typer.Option(..., "--endpoint", help="The database's URL (its sandbox is another endpoint), "
                                 "e.g. https://transparency.dsa.ec.europa.eu"),
    token: str = typer.Option(..., "--token", help="Name of the environment variable that holds the API token."),
    since: str = typer.Option(None, "--since", help="Only decisions taken on this day (YYYY-MM-DD) or later.",
                              show_default=False),
    retries: int = typer.Option(5, "--retries", min=0, help="Tries after the first, on 429, 5xx and broken "
                                "connections (exponential backoff)."),
    batch_size: int = typer.Option(100, "--batch-size", min=1, max=100, help="Statements per call (at most 100)."),
) -> None:
    """Send every valid statement that the database at --endpoint does not hold yet, in batches;
    a rerun after a failure sends only the rest. Statements that fail validation are never sent
    (they are listed). Exit 0 when everything valid was accepted, 1 when some were refused or
    invalid, 2 when the database could not be reached.

      icm dsa submit --endpoint URL --token ICM_DSA_TOKEN
    """
    from icm.dsa.submit import Client
    from icm.dsa.submit import submit as send
    from icm.serve.statements import StoreLedger

    secret = os.environ.get(token)
    if not secret:
        raise InputError(f"--token names the environment variable with the API token; {token} is not set")
    day = _day(since)
    with statements_of(db) as (statements, store):
        outcome = send(statements.all(day), Client(endpoint, secret, retries=retries), StoreLedger(store, endpoint),
                       batch_size=batch_size)
    for puid, problems in outcome.invalid:
        errors.print(output.text(f"not sent, fails validation: {puid}: " + "; ".join(problems)))
    for puid, problem in outcome.refused:
        errors.print(output.text(f"refused by the database: {puid}: {json.dumps(problem, ensure_ascii=False)}"))
    console.print(output.text(outcome.summary()), soft_wrap=True)
    if outcome.invalid or outcome.refused:
        raise typer.Exit(1)


@app.command("report", no_args_is_help=True)
def report(
    db: str = DB,
    period: str = typer.Option(..., "--period", help="2026, 2026-H2, 2026-Q3 or 2026-11."),
    out: Path = typer.Option(None, "--out", "-o", help="Where to write PERIOD.json and PERIOD.csv "
                             "(default: the current folder).", show_default=False),
) -> None:
    """Print and write the counts a transparency report needs (DSA Articles 15 and 24):

      icm dsa report --db sqlite:///icm-serve.db --period 2026-H2
    """
    with statements_of(db) as (statements, _):
        counts = statements.report(period)
    folder = out or Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    name = f"dsa-report-{counts.period}"
    (folder / f"{name}.json").write_text(counts.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (folder / f"{name}.csv").write_text(counts.csv(), encoding="utf-8")
    lines = [f"DSA transparency report {counts.period} ({counts.start} to {counts.end}, exclusive)",
             f"decisions with a statement of reasons: {counts.decisions}"
             + (f" ({counts.invalid} more whose statement fails validation)" if counts.invalid else "")]
    for title, section in (("by category", counts.by_category), ("by restriction", counts.by_restriction),
                           ("by automation", counts.by_automation), ("by source", counts.by_source)):
        lines.append(f"{title}: " + (", ".join(f"{k} {v}" for k, v in section.items()) or "none"))
    lines.append(f"own initiative: {counts.own_initiative}, notices: {counts.notices}")
    median = counts.median_hours_to_decision
    lines.append("median time from upload to decision: " + ("-" if median is None else f"{median:.2f} h"))
    lines.append(f"appeals: {counts.appeals.received} received, {counts.appeals.decided} decided, "
                 f"{counts.appeals.overturned} overturned")
    lines.append(f"wrote {folder / (name + '.json')} and {folder / (name + '.csv')} at "
                 f"{datetime.now().astimezone():%Y-%m-%d %H:%M}")
    for line in lines:
        console.print(output.text(line), soft_wrap=True)
