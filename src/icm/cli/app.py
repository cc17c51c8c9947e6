"""The root ``icm`` command. Sub-commands live in their own modules and import lazily."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from icm import __version__
from icm.cli import bank, data, dsa, eval, hash, moderate, policy, review, schema, serve, train
from icm.cli.help import plain_help
from icm.errors import IcmError


def report_error(exc: BaseException) -> None:
    """One line on stderr, the message printed as it is (never read as rich markup)."""
    from rich.console import Console
    from rich.text import Text

    line = Text("error: ", style="red")
    line.append(str(exc) or type(exc).__name__)
    Console(stderr=True, soft_wrap=True, highlight=False).print(line)


class IcmGroup(TyperGroup):
    """The root command: any :class:`~icm.errors.IcmError` that a command lets through becomes
    one line on stderr and the error's exit status (2 for bad input or a failed model). Its
    command tree shows flags and arguments as :mod:`icm.cli.help` describes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain_help(self)

    def invoke(self, ctx: Any) -> Any:  # typer.Context; typer vendors click privately
        try:
            return super().invoke(ctx)
        except IcmError as exc:
            report_error(exc)
            raise typer.Exit(exc.exit_code) from exc


app = typer.Typer(
    cls=IcmGroup,
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
app.command("hash", no_args_is_help=True)(hash.hash_files)
app.add_typer(bank.app, name="bank")
app.add_typer(policy.app, name="policy")
app.add_typer(schema.app, name="schema")
app.add_typer(eval.app, name="eval")
app.command("train", no_args_is_help=True)(train.train)
app.command("calibrate", no_args_is_help=True)(train.calibrate)
app.add_typer(data.app, name="data")
app.add_typer(serve.app, name="serve")
app.add_typer(review.app, name="review")
app.add_typer(dsa.app, name="dsa")


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
