"""Helpers of the service's tests: a live uvicorn server in a thread, keys, small images."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
from PIL import Image

from icm.backends.base import Backend
from icm.serve.app import create_app
from icm.serve.auth import create_key
from icm.serve.settings import ServeSettings
from icm.serve.store import Store, migrate

FAST_POLICY = Path(__file__).parent / "fast.yaml"

@dataclass
class LiveServer:
    """uvicorn serving ``create_app(settings)`` in a thread, on a loopback port of its own."""

    settings: ServeSettings
    backend: Backend | None = None
    url: str = ""
    _server: Any = None
    _thread: threading.Thread | None = None
    keys: dict[str, str] = field(default_factory=dict)

    def start(self) -> LiveServer:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        app = create_app(self.settings, backend=self.backend)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx2.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return self
            except httpx2.TransportError:
                pass
            if not self._thread.is_alive():
                raise RuntimeError("the server stopped during start")
            time.sleep(0.05)
        raise RuntimeError("the server did not become ready in 120 s")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(60)
            assert not self._thread.is_alive(), "the server did not stop"

    def key(self, *scopes: str) -> str:
        """A key with these scopes (one per scope set, made on first use)."""
        name = ",".join(scopes)
        if name not in self.keys:
            store = Store(self.settings.db)
            try:
                self.keys[name] = create_key(store, f"test {name}", scopes)[1]
            finally:
                store.close()
        return self.keys[name]

    def client(self, *scopes: str, **options: Any) -> httpx2.Client:
        headers = {"Authorization": f"Bearer {self.key(*scopes)}"} if scopes else {}
        return httpx2.Client(base_url=self.url, headers=headers, timeout=options.pop("timeout", 120), **options)


def settings_for(db: str, tmp_path: Path, **overrides: Any) -> ServeSettings:
    values: dict[str, Any] = {
        "policies": [str(FAST_POLICY), "general"],
        "db": db,
        "image_dir": tmp_path / "images",
        "rate_limit": None,
        "workers": 2,
        "queue_size": 32,
    }
    values.update(overrides)
    migrate(db)
    return ServeSettings(**values)


def png_bytes(seed: int, size: tuple[int, int] = (64, 64)) -> bytes:
    """A small distinct image per seed (random pixels)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


async def burst(url: str, key: str, n: int, **body: object) -> list[httpx2.Response]:
    """``n`` moderation requests sent at once, of the images ``png_bytes(100 + i)``."""
    async with httpx2.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as client:
        return list(await asyncio.gather(*(
            client.post("/v1/moderate", json={"image": data_url(png_bytes(100 + i)), **body}) for i in range(n)
        )))
