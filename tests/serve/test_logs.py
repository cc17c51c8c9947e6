"""The service's log lines: JSON for a collector, plain text for a terminal (uvicorn's colour-coded
copy of its message never leaks into either), and ``icm serve`` choosing by where stderr goes."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

from icm.serve.logs import REQUEST_ID, JsonFormatter, TextFormatter, formatter

ICM = [sys.executable, "-c", "from icm.cli.app import main; main()"]


def _uvicorn_record() -> logging.LogRecord:
    """A record as uvicorn logs its start-up line: the message, and a copy with ANSI colour codes."""
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Uvicorn running on %s", ("x",), None)
    record.color_message = "Uvicorn running on \x1b[1m%s\x1b[0m"
    return record


def test_json_lines_leave_out_uvicorns_colour_codes() -> None:
    line = JsonFormatter().format(_uvicorn_record())
    entry = json.loads(line)
    assert entry["message"] == "Uvicorn running on x"
    assert "color_message" not in entry and "\x1b" not in line


def test_text_lines_are_plain_with_the_fields_and_the_request_id() -> None:
    record = logging.LogRecord("icm.serve.access", logging.INFO, __file__, 1, "request", None, None)
    record.status = 200
    record.path = "/healthz"
    token = REQUEST_ID.set("probe-7")
    try:
        line = TextFormatter().format(record)
    finally:
        REQUEST_ID.reset(token)
    assert "info" in line and "icm.serve.access: request" in line
    assert "status=200" in line and "path=/healthz" in line and "request_id=probe-7" in line
    assert "\x1b" not in TextFormatter().format(_uvicorn_record()) and "color_message" not in line


def test_auto_is_text_on_a_terminal_and_json_otherwise() -> None:
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as terminal:
        assert isinstance(formatter("auto", terminal), TextFormatter)
        assert isinstance(formatter("json", terminal), JsonFormatter)
    os.close(leader)
    assert isinstance(formatter("auto", io.StringIO()), JsonFormatter)
    assert isinstance(formatter("text", io.StringIO()), TextFormatter)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _first_lines(command: list[str], cwd: Path, *, terminal: bool) -> str:
    """What the server writes on stderr until it says it is running (then it is stopped)."""
    env = {**os.environ, "ICM_RATE_LIMIT": "none"}
    if terminal:
        leader, follower = pty.openpty()
        server = subprocess.Popen(command, cwd=cwd, stdout=follower, stderr=follower, env=env)
        os.close(follower)
        read = lambda: os.read(leader, 65536) if select.select([leader], [], [], 0.5)[0] else b""  # noqa: E731
    else:
        server = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        assert server.stderr is not None
        os.set_blocking(server.stderr.fileno(), False)
        read = lambda: server.stderr.read() or b""  # type: ignore[union-attr]  # noqa: E731
    out = b""
    deadline = time.monotonic() + 120
    try:
        while b"running on" not in out.lower():
            assert time.monotonic() < deadline and server.poll() is None, out.decode(errors="replace")
            try:
                out += read()
            except OSError:  # the terminal closed with the process
                break
            time.sleep(0.05)
    finally:
        server.terminate()
        server.wait(timeout=60)
        if terminal:
            os.close(leader)
    return out.decode(errors="replace")


def test_icm_serve_logs_text_on_a_terminal_and_json_into_a_pipe(tmp_path: Path) -> None:
    command = [*ICM, "serve", "--policy", "general", "--db", f"sqlite:///{tmp_path / 'icm.db'}", "--workers", "1"]
    on_terminal = _first_lines([*command, "--port", str(_free_port())], tmp_path, terminal=True)
    assert "\x1b[" not in on_terminal and "uvicorn.error: Uvicorn running on" in on_terminal
    assert not any(line.startswith("{") for line in on_terminal.splitlines())

    into_pipe = _first_lines([*command, "--port", str(_free_port())], tmp_path, terminal=False)
    entries = [json.loads(line) for line in into_pipe.splitlines() if line.strip()]
    assert any("running on" in entry["message"].lower() for entry in entries)
    assert "\x1b[" not in into_pipe and all("color_message" not in entry for entry in entries)

    forced = _first_lines([*command, "--port", str(_free_port()), "--log-format", "json"], tmp_path, terminal=True)
    assert any(line.lstrip().startswith("{") for line in forced.splitlines())
