"""The root command's one error handler: every IcmError becomes one line and its exit status."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from icm.cli.app import IcmGroup
from icm.errors import IcmError, InputError, ModelError, ModelOutputError, ModelTimeout


def _app_raising(exc: BaseException) -> typer.Typer:
    app = typer.Typer(cls=IcmGroup)

    @app.command()
    def boom() -> None:
        raise exc

    @app.command()
    def fine() -> None:
        typer.echo("ok")

    return app


@pytest.mark.parametrize(
    "exc",
    [InputError("bad [input]"), ModelError("server down"), ModelTimeout("slow"), ModelOutputError("no JSON", "raw")],
)
def test_icm_errors_become_one_line_and_exit_2(exc: IcmError) -> None:
    result = CliRunner().invoke(_app_raising(exc), ["boom"])
    assert result.exit_code == exc.exit_code == 2
    assert result.output.strip() == f"error: {exc}"  # brackets printed as written, not as markup
    assert "Traceback" not in result.output


def test_other_exceptions_are_not_swallowed() -> None:
    result = CliRunner().invoke(_app_raising(KeyError("bug")), ["boom"])
    assert isinstance(result.exception, KeyError)


def test_every_exception_class_of_icm_derives_from_the_root() -> None:
    import importlib
    import inspect
    import pkgutil

    import icm

    skip = {"icm.backends.vllm_engine"}  # needs vllm, a GPU extra; migrations run only inside Alembic
    strays = []
    for module_info in pkgutil.walk_packages(icm.__path__, "icm."):
        if module_info.name in skip or module_info.name.startswith(("icm.cli", "icm.serve.store.migrations")):
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, Exception)
                and value.__module__ == module.__name__
                and not issubclass(value, IcmError)
            ):
                strays.append(f"{module.__name__}.{name}")
    assert strays == []
