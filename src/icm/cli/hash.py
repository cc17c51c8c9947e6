"""``icm hash``: the hashes of image files, as banks and HMA clients exchange them."""

from __future__ import annotations

import json

import typer

HASH_HELP = """
Prints one JSON line per file: path, sha256, md5, pdq and quality (one PDQ and one quality per
judged frame: a still image has one, an animated one up to 8). A file that is not an image prints
its error instead ({"path", "error": {"code", "message"}}).

Exit status: 0 every file was hashed; 1 some were not.
"""


def hash_files(
    files: list[str] = typer.Argument(..., help="Image files.", show_default=False),
) -> None:
    """Hash image files: PDQ (perceptual), md5 and sha256 (exact), one JSON line per file."""
    from icm.banks.hashing import hash_file
    from icm.media import MediaError

    failed = 0
    for path in files:
        try:
            line = hash_file(path)
        except MediaError as exc:
            failed += 1
            line = {"path": path, "error": {"code": str(exc.code), "message": exc.message}}
        typer.echo(json.dumps(line))
    if failed:
        raise typer.Exit(1)


hash_files.__doc__ = (hash_files.__doc__ or "") + HASH_HELP
