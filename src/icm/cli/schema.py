"""``icm schema``: the JSON Schemas of the two documents everything meets at, and of a DSA statement."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="Print JSON Schemas (for validation, code generation, constrained decoding).",
                  no_args_is_help=True)


@app.command("result")
def result_schema() -> None:
    """JSON Schema of a ModerationResult (one line of `icm moderate --out`)."""
    from icm.results import ModerationResult

    typer.echo(json.dumps(ModerationResult.model_json_schema(), indent=2))


@app.command("policy")
def policy_schema() -> None:
    """JSON Schema of a policy file."""
    from icm.policy.schema import Policy

    typer.echo(json.dumps(Policy.model_json_schema(), indent=2))


@app.command("dsa")
def dsa_schema() -> None:
    """JSON Schema of an EU DSA statement of reasons (a line of `icm dsa export`)."""
    from icm.dsa import Statement

    typer.echo(json.dumps(Statement.model_json_schema(), indent=2))
