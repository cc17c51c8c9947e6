"""``icm bank``: known-content banks in a folder (create, add, import, export, list, remove)."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from icm.cli import output
from icm.cli.store import DB

if TYPE_CHECKING:
    from icm.banks.store import BankStore

app = typer.Typer(
    help="Known-content banks: lists of PDQ (perceptual) or md5/sha256 (exact) hashes that decide "
    "a rule before any model runs (`icm moderate --banks DIR`).",
    no_args_is_help=True,
)

BANKS_HELP = ("Bank folder (one sub-folder per bank; created when the first bank is). Without it: "
              "the banks of the service's store (--db).")


def _banks_option() -> Path | None:
    return typer.Option(None, "--banks", envvar="ICM_BANKS", help=BANKS_HELP, show_default=False)




@contextmanager
def bank_store(banks: Path | None, db: str | None) -> Iterator[BankStore]:
    """Where the command's banks live: the folder of --banks, else the service's store, found as
    every command finds it (--db, else ICM_DB, else sqlite:///icm-serve.db)."""
    from icm.errors import InputError

    if banks is not None and db is not None:
        raise InputError("give the banks' place once: --banks DIR (a bank folder) or --db URL (the "
                         "service's store), not both")
    if banks is not None:
        from icm.banks.folder import BankFolder

        yield BankFolder(banks)
        return
    from icm.cli.store import opened
    from icm.serve.store.banks import SqlBanks

    with opened(db) as store:
        yield SqlBanks(store)


def _by_option() -> str | None:
    return typer.Option(None, "--by", help="Who adds the entries (default: the user running the command).",
                        show_default=False)


def _user(by: str | None) -> str:
    return by or getpass.getuser()


@app.command("create", no_args_is_help=True)
def create(
    name: str = typer.Argument(..., help="CAPS_AND_UNDERSCORES, e.g. KNOWN_VIOLATING.", show_default=False),
    kind: str = typer.Option(..., "--kind", help="deny (known violating) or allow (known benign).",
                             show_default=False),
    rules: list[str] = typer.Option(..., "--rule", help="deny: the rule its content violates; allow: a rule "
                                    "it clears (repeat for several).", show_default=False),
    signal: str = typer.Option("pdq", "--signal", help="pdq (perceptual), md5 or sha256 (exact)."),
    distance: int | None = typer.Option(None, "--distance", min=0, max=256,
                                        help="Largest PDQ distance that matches (default 31).",
                                        show_default=False),
    quality_floor: int = typer.Option(50, "--quality-floor", min=0, max=100,
                                      help="An image PDQ of lower quality never matches."),
    dihedral: bool = typer.Option(False, "--dihedral", help="Also match rotated and mirrored copies."),
    dsa_category: str | None = typer.Option(None, "--dsa-category", help="deny: the DSA category.",
                                            show_default=False),
    description: str = typer.Option("", "--description", help="What the bank holds."),
    banks: Path | None = _banks_option(),
    db: str | None = DB,
    by: str | None = _by_option(),
) -> None:
    """Create a bank."""
    from pydantic import ValidationError

    from icm.banks.model import BankConfig, BankError
    from icm.validation import describe_validation_error

    fields: dict[str, object] = {
        "name": name, "kind": kind, "rules": rules, "signal": signal, "quality_floor": quality_floor,
        "dihedral": dihedral, "dsa_category": dsa_category, "description": description,
        "created_by": _user(by),
    }
    if distance is not None:
        fields["distance"] = distance
    try:
        config = BankConfig.model_validate(fields)
    except ValidationError as exc:
        raise BankError(f"bank {name}: {describe_validation_error(exc, root='bank')}") from exc
    with bank_store(banks, db) as store:
        store.create(config)
    typer.echo(json.dumps(config.model_dump(mode="json")))


@app.command("add", no_args_is_help=True)
def add(
    name: str = typer.Argument(..., help="The bank.", show_default=False),
    files: list[Path] = typer.Argument(..., help="Image files to hash and add.", show_default=False),
    content_id: str | None = typer.Option(None, "--id", help="Content id (one file only; default: the "
                                          "file's sha256).", show_default=False),
    labels: list[str] = typer.Option([], "--label", help="A label (repeat for several)."),
    banks: Path | None = _banks_option(),
    db: str | None = DB,
    by: str | None = _by_option(),
) -> None:
    """Hash image files and add them to a bank: one line per entry added (content id, hash)."""
    from icm.banks.hashing import entries_from_file
    from icm.banks.model import BankError

    if content_id is not None and len(files) > 1:
        raise BankError("--id names one file's content; give one file, or let each file's sha256 name it")
    with bank_store(banks, db) as store:
        bank = store.get(name)
        # every file hashed before any is added: one bad file adds nothing
        entries = [entry for file in files for entry in entries_from_file(
            bank.config, file, content_id=content_id, labels=labels, added_by=_user(by))]
        added = bank.add(entries)
    for entry in added:
        typer.echo(json.dumps({"bank": name, "content_id": entry.content_id, "hash": entry.hash,
                               "quality": entry.quality, "source": entry.source}))


@app.command("import", no_args_is_help=True)
def import_list(
    name: str = typer.Argument(..., help="The bank.", show_default=False),
    hash_list: str = typer.Argument(..., metavar="LIST", help="A hash list file, or - for stdin: one hash "
                                    "per line, optionally ,content_id,labels (CSV).", show_default=False),
    banks: Path | None = _banks_option(),
    db: str | None = DB,
    by: str | None = _by_option(),
) -> None:
    """Import a plain hash list (as HMA and python-threatexchange exchange them) into a bank."""
    from icm.banks.lists import parse_list
    from icm.banks.model import BankError

    if hash_list == "-":
        text, source = sys.stdin.read(), "<stdin>"
    else:
        try:
            text, source = Path(hash_list).read_text(), hash_list
        except (OSError, UnicodeDecodeError) as exc:
            raise BankError(f"cannot read {hash_list}: {getattr(exc, 'strerror', None) or exc}") from exc
    with bank_store(banks, db) as store:
        bank = store.get(name)
        added = bank.add(parse_list(text, bank.config.signal, source=source, added_by=_user(by)))
    Console(stderr=True).print(output.text(f"{len(added)} entries added to {name}"))


@app.command("export", no_args_is_help=True)
def export(
    name: str = typer.Argument(..., help="The bank.", show_default=False),
    banks: Path | None = _banks_option(),
    db: str | None = DB,
) -> None:
    """Print a bank as a plain hash list: hash,content_id,labels per line."""
    from icm.banks.lists import list_lines

    with bank_store(banks, db) as store:
        entries = store.get(name).entries()
    for line in list_lines(entries):
        typer.echo(line)


@app.command("list")
def list_banks(
    banks: Path | None = _banks_option(),
    db: str | None = DB,
    as_json: bool = typer.Option(False, "--json", help="One JSON line per bank."),
) -> None:
    """The banks of a folder: kind, rules, signal, distance and entry count."""

    rows = []
    with bank_store(banks, db) as store:
        for name in store.names():
            bank = store.get(name)
            entries = bank.entries()
            rows.append(bank.config.model_dump(mode="json") | {
                "entries": len(entries), "contents": len({e.content_id for e in entries})})
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    grid = output.table("bank", "kind", "rules", "signal", "distance", "entries",
                        title=f"banks in {banks or 'the store'}")
    for row in rows:
        output.add_row(grid, row["name"], row["kind"], ", ".join(row["rules"]), row["signal"],
                       row["distance"], row["entries"])
    Console().print(grid)


@app.command("remove", no_args_is_help=True)
def remove(
    name: str = typer.Argument(..., help="The bank.", show_default=False),
    content_id: str = typer.Argument(..., help="The content id whose entries go.", show_default=False),
    banks: Path | None = _banks_option(),
    db: str | None = DB,
) -> None:
    """Remove a content id's entries from a bank."""
    from icm.banks.model import BankNotFound

    with bank_store(banks, db) as store:
        removed = store.get(name).remove(content_id)
    if not removed:
        raise BankNotFound(f"bank {name} holds no content {content_id}")
    Console(stderr=True).print(output.text(f"{removed} entries of {content_id} removed from {name}"))
