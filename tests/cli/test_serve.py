"""``icm serve`` as a user runs it: keys from the command line, the server in its own process, the
openai client, the stored result by id, revocation, and a graceful shutdown that finishes the
request in hand."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2
import openai
from helpers import sample_image
from serve.live import data_url

ICM = [sys.executable, "-c", "from icm.cli.app import main; main()"]


def _icm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ICM, *args], capture_output=True, text=True, timeout=300, cwd=cwd, check=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    sample_image("astronaut").save(buffer, "JPEG")
    return buffer.getvalue()


def test_serve_from_the_command_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'icm.db'}"
    created = _icm("serve", "keys", "create", "--name", "[b]eu[/b]", "--scope", "moderate", "--db", db, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("icm_") and "\n" not in key
    listed = _icm("serve", "keys", "list", "--db", db, cwd=tmp_path)
    assert "[b]eu[/b]" in listed.stdout and key not in listed.stdout  # shown as given; the key only once
    key_id = created.stderr.split()[1]
    assert key_id.startswith("key_") and key_id in listed.stdout
    assert _icm("serve", "keys", "create", "--name", "x", "--scope", "owner", "--db", db, cwd=tmp_path).returncode == 2

    port = _free_port()
    server = subprocess.Popen(
        [*ICM, "serve", "--policy", "general", "--port", str(port), "--db", db, "--workers", "1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "ICM_RATE_LIMIT": "none"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if httpx2.get(url + "/readyz", timeout=5).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "not ready in 240 s"
            time.sleep(0.2)

        client = openai.OpenAI(api_key=key, base_url=url + "/v1", max_retries=0)
        image = data_url(_jpeg(), "image/jpeg")
        answer = client.moderations.with_raw_response.create(
            model="general", input=[{"type": "image_url", "image_url": {"url": image}}]
        )
        stored = answer.http_response.json()["results"][0]["icm"]
        with httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as http:
            assert http.get(f"/v1/results/{stored['id']}").json() == stored
            if stored["decision"] != "allow":  # kept for review, under its sha256
                assert (tmp_path / "icm-images" / stored["sha256"][:2] / stored["sha256"]).exists()

            # a request in hand when SIGTERM comes is finished before the process ends
            outcome: dict[str, httpx2.Response] = {}

            def slow() -> None:
                outcome["answer"] = http.post("/v1/moderate", json={"image": image, "fresh": True})

            worker = threading.Thread(target=slow)
            worker.start()
            deadline = time.monotonic() + 60
            while "icm_in_flight 1.0" not in httpx2.get(url + "/metrics").text:
                assert time.monotonic() < deadline and worker.is_alive()
                time.sleep(0.01)
            revoked = _icm("serve", "keys", "revoke", key_id, "--db", db, cwd=tmp_path)
            assert revoked.returncode == 0, revoked.stderr
            assert httpx2.get(url + "/v1/policies", headers={"Authorization": f"Bearer {key}"}).status_code == 401
            server.send_signal(signal.SIGTERM)
            worker.join(300)
        assert outcome["answer"].status_code == 200, outcome["answer"].text
        assert outcome["answer"].json()["id"] != stored["id"]
        # uvicorn re-raises the signal once it has shut down cleanly, as a process ended by it
        assert server.wait(120) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    log = server.stdout.read() if server.stdout else ""
    assert '"message": "shutting down: finishing the requests in hand"' in log, log[-3000:]
    assert _icm("serve", "migrate", "--db", db, cwd=tmp_path).returncode == 0
