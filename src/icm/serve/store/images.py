"""Kept images: the bytes of images whose decision is not allow, named by their sha256, for the
review console. On disk (a folder every replica mounts) or in the database (nothing else to
share), per ``ICM_KEEP_IMAGES``."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from icm.errors import InputError
from icm.serve.settings import ServeSettings
from icm.serve.store.database import Store
from icm.storage import Folder


class ImageStore(Protocol):
    def put(self, sha256: str, data: bytes) -> None:
        """Keep an image (keeping it twice is fine)."""

    def get(self, sha256: str) -> bytes | None:
        """The kept image, or None."""

    def delete(self, sha256: str) -> bool:
        """Forget an image; False when it was not kept."""


class DiskImages:
    """Content-addressed files: ``FOLDER/ab/abcdef...``, written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._files = Folder(folder)

    @staticmethod
    def _name(sha256: str) -> str:
        return f"{sha256[:2]}/{sha256}"

    def path(self, sha256: str) -> Path:
        return self._files.path(self._name(sha256))

    def put(self, sha256: str, data: bytes) -> None:
        if not self._files.exists(self._name(sha256)):
            self._files.write(self._name(sha256), data)  # a reader never sees half an image

    def get(self, sha256: str) -> bytes | None:
        try:
            return self._files.read(self._name(sha256))
        except FileNotFoundError:
            return None

    def delete(self, sha256: str) -> bool:
        return self._files.delete(self._name(sha256))


class DatabaseImages:
    """Rows of the store's ``images`` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def put(self, sha256: str, data: bytes) -> None:
        self.store.put_image(sha256, data)

    def get(self, sha256: str) -> bytes | None:
        return self.store.image(sha256)

    def delete(self, sha256: str) -> bool:
        return self.store.delete_image(sha256)


def image_store(settings: ServeSettings, store: Store) -> ImageStore | None:
    """Where this service keeps images, or None when it keeps none."""
    return kept_images(store, settings.keep_images, settings.image_dir)


def kept_images(store: Store, where: str, image_dir: Path) -> ImageStore | None:
    """The images kept ``where`` (disk: in ``image_dir``; database: in ``store``; none)."""
    if where == "disk":
        return DiskImages(image_dir)
    if where == "database":
        return DatabaseImages(store)
    if where == "none":
        return None
    raise InputError(f"images are kept on disk, in the database or nowhere (none), not {where!r}")


def images_to_read(store: Store, where: str, image_dir: Path) -> ImageStore:
    """The images a service kept ``where``, for a command that reads them (export, replay)."""
    images = kept_images(store, where, image_dir)
    if images is None:
        raise InputError("the service keeps no images (ICM_KEEP_IMAGES=none): there are none to read")
    return images
