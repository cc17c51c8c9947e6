"""``icm serve``: the moderation API a platform puts in its upload path (FastAPI on uvicorn).

>>> from icm.serve import ServeSettings, create_app
>>> app = create_app(ServeSettings(policies=["general"]))      # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ServeSettings", "create_app"]

if TYPE_CHECKING:
    from icm.serve.app import create_app
    from icm.serve.settings import ServeSettings


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from icm.serve.app import create_app

        return create_app
    if name == "ServeSettings":
        from icm.serve.settings import ServeSettings

        return ServeSettings
    raise AttributeError(f"module 'icm.serve' has no attribute {name!r}")
