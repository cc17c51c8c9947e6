"""``icm serve``: the HTTP service, its database migrations, API keys and retention."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from icm.cli.extras import needs_extra
from icm.cli.output import add_row, error, table, text
from icm.cli.store import DB
from icm.cli.store import failures as _failures
from icm.cli.store import opened as _opened
from icm.cli.store import settings as _settings

app = typer.Typer(
    help="The moderation API (FastAPI on uvicorn): `icm serve --policy general`, then create a key "
    "with `icm serve keys create`.",
    invoke_without_command=True,
)
keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
users_app = typer.Typer(help="Accounts of the review console (/review): create, list, password, disable, enable.",
                        no_args_is_help=True)
app.add_typer(users_app, name="users")
console = Console()
errors = Console(stderr=True, soft_wrap=True)

@app.callback()
def serve(
    ctx: typer.Context,
    policy: list[str] = typer.Option(
        None, "--policy", "-p", help="Policy to serve (built-in name or YAML file); repeat for more. "
        "The first is the default.", show_default=False,
    ),
    backend: str = typer.Option(None, "--backend", "-b", help="Backend spec (default: local).", show_default=False),
    backend_options: Path = typer.Option(None, "--backend-options", help="YAML file of backend keywords.",
                                         show_default=False),
    host: str = typer.Option(None, "--host", help="Address to listen on (default: 127.0.0.1).", show_default=False),
    port: int = typer.Option(None, "--port", help="Port to listen on (default: 8080).", show_default=False),
    db: str | None = DB,
    workers: int = typer.Option(None, "--workers", "-w", help="Images judged at the same time (default: 2).",
                                show_default=False),
    queue_size: int = typer.Option(None, "--queue-size", help="Requests that may wait for a worker; more get "
                                   "503 (default: 32).", show_default=False),
    timeout: float = typer.Option(None, "--timeout", help="Seconds a request may take (default: 60; 504 after).",
                                  show_default=False),
    batch_size: int = typer.Option(None, "--batch-size", help="Most images judged in one backend call when "
                                   "requests arrive together (default: 8 where the backend batches images, else 1).",
                                   show_default=False),
    keep_images: str = typer.Option(None, "--keep-images", help="Where images with a decision other than allow "
                                    "are kept for review: disk (ICM_IMAGE_DIR, default), database or none.",
                                    show_default=False),
    rate_limit: str = typer.Option(None, "--rate-limit", help="Requests per key, e.g. 600/minute (the "
                                   "default) or 10/second; 'none' for no limit.", show_default=False),
    log_level: str = typer.Option(None, "--log-level", help="debug, info, warning or error.", show_default=False),
    log_format: str = typer.Option(None, "--log-format", help="json, text or auto (the default: text on a "
                                   "terminal, JSON lines otherwise).", show_default=False),
) -> None:
    """Serve the moderation API. Every flag is also an ICM_* environment variable (ICM_DB, ICM_PORT ...)."""
    if ctx.invoked_subcommand is not None:
        return
    with needs_extra("serve", "icm serve"):
        import uvicorn

        from icm.serve.app import create_app
        from icm.serve.logs import configure_logging

    settings = _settings(
        policies=policy or None, backend=backend, backend_options=backend_options, host=host, port=port, db=db,
        workers=workers, queue_size=queue_size, request_timeout=timeout, batch_size=batch_size,
        keep_images=keep_images, rate_limit=rate_limit, log_level=log_level, log_format=log_format,
    )
    configure_logging(settings.log_level, settings.log_format)
    with _failures():
        application = create_app(settings)
    # uvicorn stops taking connections on SIGTERM/SIGINT and waits for the requests in hand;
    # then the app's shutdown lets the workers finish before the process ends
    uvicorn.run(application, host=settings.host, port=settings.port, log_config=None, access_log=False,
                log_level=settings.log_level.lower())


@app.command("migrate")
def migrate_command(db: str | None = DB) -> None:
    """Bring the store's schema up to date (run once before replicas start with ICM_MIGRATE_ON_START=false)."""
    with needs_extra("serve", "icm serve migrate"):
        from icm.serve.store import migrate

    settings = _settings(db=db)
    with _failures():
        migrate(settings.db)
    console.print(text("the store's schema is up to date"))


@keys_app.command("create")
def create_key(
    name: str = typer.Option(..., "--name", help="Who or what uses the key."),
    scope: list[str] = typer.Option(
        ["moderate"], "--scope", help="moderate (judge images, read own results), review (read all "
        "results) or admin (everything, publish policies); repeat for several."
    ),
    db: str | None = DB,
) -> None:
    """Create a key. It is printed once, here; the store keeps only its hash."""
    with needs_extra("serve", "icm serve keys create"):
        from icm.serve.auth import create_key as create

    with _opened(db) as store:
        key_id, secret = create(store, name, scope)
    errors.print(text(f"created {key_id} ({', '.join(scope)}); the key is shown only now:"))
    typer.echo(secret)


@keys_app.command("list")
def list_keys(db: str | None = DB) -> None:
    """Every key: id, name, scopes, when created and revoked (never the key itself)."""
    with _opened(db) as store:
        rows = store.keys()
    grid = table("id", "name", "scopes", "created", "revoked")
    for row in rows:
        revoked = row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else ""
        add_row(grid, row.id, row.name, row.scopes, row.created_at.isoformat(timespec="seconds"), revoked)
    console.print(grid)


@keys_app.command("revoke")
def revoke_key(
    key_id: str = typer.Argument(..., help="The key's id (key_...), as `icm serve keys list` shows."),
    db: str | None = DB,
) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    with _opened(db) as store:
        found = store.revoke_key(key_id)
    if not found:
        errors.print(error(f"no key {key_id!r}"))
        raise typer.Exit(2)
    console.print(text(f"revoked {key_id}"))


@app.command("purge")
def purge(
    older_than: int = typer.Option(None, "--older-than", min=1, help="Days; default: ICM_RETENTION_DAYS.",
                                   show_default=False),
    db: str | None = DB,
    image_dir: Path = typer.Option(None, "--image-dir", help="Where images are kept (default: ICM_IMAGE_DIR, "
                                   "else icm-images).", show_default=False),
) -> None:
    """Delete results older than the retention, and the kept images no remaining result needs."""
    from datetime import timedelta

    with needs_extra("serve", "icm serve purge"):
        from icm.serve.store.images import image_store
        from icm.serve.store.models import utcnow

    settings = _settings(db=db, image_dir=image_dir)
    days = older_than or settings.retention_days
    if days is None:
        errors.print(error("give --older-than DAYS or set ICM_RETENTION_DAYS"))
        raise typer.Exit(2)
    with _opened(db) as store:
        count, orphans = store.purge(utcnow() - timedelta(days=days))
        images = image_store(settings, store)
        removed = sum(images.delete(sha256) for sha256 in orphans) if images is not None else 0
    console.print(text(f"deleted {count} results and {removed} images older than {days} days"))


def _password(password_stdin: bool) -> str:
    import sys

    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


@users_app.command("create")
def create_user(
    username: str = typer.Argument(..., help="The name the person logs in with."),
    role: str = typer.Option("reviewer", "--role", help="reviewer (works the queue and appeals) or admin (also "
                             "sees and exports the audit log)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from the first line "
                                        "of standard input instead of asking for it."),
    db: str | None = DB,
) -> None:
    """Create a console account; its password (10 characters or more) is stored as an argon2 hash."""
    with needs_extra("serve", "icm serve users create"):
        from icm.serve.review.accounts import create_user as create
        from icm.serve.store.reviews import ReviewStore

    password = _password(password_stdin)
    with _opened(db) as store:
        reviews = ReviewStore(store)
        user = create(reviews, username, password, role, actor="cli")
    console.print(text(f"created {user.role} {user.username} ({user.id})"))


@users_app.command("password")
def set_user_password(
    username: str = typer.Argument(..., help="The account's name."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the new password from standard input."),
    db: str | None = DB,
) -> None:
    """Set a new password: this lifts a lockout and logs the user out of every browser."""
    with needs_extra("serve", "icm serve users password"):
        from icm.serve.review.accounts import set_password
        from icm.serve.store.reviews import ReviewStore

    password = _password(password_stdin)
    with _opened(db) as store:
        reviews = ReviewStore(store)
        ended = set_password(reviews, username, password, actor="cli")
    console.print(text(f"password of {username} changed; {ended} session(s) ended"))


def _set_disabled(username: str, disabled: bool, db: str | None) -> None:
    with needs_extra("serve", f"icm serve users {'disable' if disabled else 'enable'}"):
        from icm.serve.review.accounts import set_disabled
        from icm.serve.store.reviews import ReviewStore

    with _opened(db) as store:
        reviews = ReviewStore(store)
        _, ended = set_disabled(reviews, username, disabled, actor="cli")
    if disabled:
        console.print(text(f"{username} disabled; {ended} session(s) ended"))
    else:
        console.print(text(f"{username} enabled"))


@users_app.command("disable")
def disable_user(
    username: str = typer.Argument(..., help="The account's name."),
    db: str | None = DB,
) -> None:
    """Disable an account: it can no longer log in, its sessions end and its leased items go back
    to the queue. Its reviews and audit entries stay."""
    _set_disabled(username, True, db)


@users_app.command("enable")
def enable_user(
    username: str = typer.Argument(..., help="The account's name."),
    db: str | None = DB,
) -> None:
    """Enable a disabled account again (with the password it had)."""
    _set_disabled(username, False, db)


@users_app.command("list")
def list_users(db: str | None = DB) -> None:
    """Every console account: name, role, when created, whether locked now, when disabled."""
    with needs_extra("serve", "icm serve users list"):
        from icm.serve.store.models import utcnow
        from icm.serve.store.reviews import ReviewStore

    with _opened(db) as store:
        rows = ReviewStore(store).users()
    grid = table("id", "username", "role", "created", "locked", "disabled")
    for row in rows:
        locked = "yes" if row.locked_until is not None and row.locked_until > utcnow() else ""
        disabled = row.disabled_at.isoformat(timespec="seconds") if row.disabled_at is not None else ""
        add_row(grid, row.id, row.username, row.role, row.created_at.isoformat(timespec="seconds"), locked,
                disabled)
    console.print(grid)
