"""The root ``icm`` command. Sub-commands live in their own modules and import lazily."""

from __future__ import annotations

import typer

from icm import __version__
from icm.cli import data, eval, moderate, policy, schema, serve, train

app = typer.Typer(
    name="icm",
    help=(
        "Rule-based, explainable image content moderation: your written rules in, a verdict, "
        "a probability, the evidence and a reason out, for every image and every rule."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("moderate", no_args_is_help=True)(moderate.moderate)
app.add_typer(policy.app, name="policy")
app.add_typer(schema.app, name="schema")
app.add_typer(eval.app, name="eval")
app.command("train", no_args_is_help=True)(train.train)
app.command("calibrate", no_args_is_help=True)(train.calibrate)
app.add_typer(data.app, name="data")
app.add_typer(serve.app, name="serve")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"icm {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """icm: rule-based, explainable image content moderation."""


def main() -> None:
    app()
