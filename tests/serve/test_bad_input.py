"""Every bad input against a live server gets its documented status and body, and the server
stays up: the media corpus, an oversized body, a wrong content type, malformed JSON, an unknown
policy or rule, a missing, wrong or revoked key, the wrong scope, remote URLs."""

from __future__ import annotations

import hashlib

import httpx2
import pytest
from corpus import many_frames_on_a_huge_canvas, write_broken
from serve.live import data_url, png_bytes

from icm.serve.auth import create_key
from icm.serve.store import Store

# the status each media error code is answered with
_STATUS = {"too_large": 413}


def _error(answer: httpx2.Response, status: int, code: str) -> dict[str, object]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == code, error
    assert error["message"]
    assert error["request_id"] == answer.headers["x-request-id"]
    assert "Traceback" not in answer.text and 'File "' not in answer.text
    return error


def test_every_broken_image_of_the_corpus(serve, db_url, tmp_path) -> None:
    server = serve(db_url)
    expected = write_broken(tmp_path / "broken")
    (tmp_path / "broken" / "frames.gif").write_bytes(many_frames_on_a_huge_canvas())  # minutes to decode
    expected["frames.gif"] = "too_large"
    with server.client("moderate") as client:
        for name, code in expected.items():
            data = (tmp_path / "broken" / name).read_bytes()
            answer = client.post("/v1/moderate", files={"image": (name, data, "application/octet-stream")},
                                 data={"policy": "fast"})
            error = _error(answer, _STATUS.get(code, 400), code)
            # the error record is stored, and says the image was not judged (never "allow")
            record = client.get(f"/v1/results/{error['result_id']}").json()
            assert record["error"]["code"] == code
            assert record["decision"] != "allow"
            # and it can be found by the sha256 of what was uploaded
            if data:
                sha256 = hashlib.sha256(data).hexdigest()
                assert record["sha256"] == sha256
                found = client.get("/v1/results", params={"sha256": sha256}).json()
                assert error["result_id"] in [r["id"] for r in found["data"]]
        # no person will look at what is no image: none of it is kept
        assert not [p for p in (tmp_path / "images").rglob("*") if p.is_file()]
        assert client.get("/healthz").status_code == 200
        assert client.post("/v1/moderate", json={"image": data_url(png_bytes(1)), "policy": "fast"}).status_code == 200


def test_malformed_requests(serve, db_url) -> None:
    server = serve(db_url, max_body_bytes=64 * 1024)
    with server.client("moderate") as client:
        big = png_bytes(1, size=(512, 512))
        assert len(big) > 64 * 1024
        _error(client.post("/v1/moderate", files={"image": ("big.png", big, "image/png")}), 413, "too_large")
        _error(client.post("/v1/moderate", json={"image": data_url(big)}), 413, "too_large")
        _error(client.post("/v1/moderations", json={"input": [{"type": "image_url",
               "image_url": {"url": data_url(big)}}]}), 413, "too_large")
        _error(client.post("/v1/moderate", content=b"hello", headers={"Content-Type": "text/plain"}),
               415, "unsupported_media_type")
        _error(client.post("/v1/moderate", content=b'{"image": "data:', headers={"Content-Type": "application/json"}),
               400, "bad_input")
        _error(client.post("/v1/moderations", content=b"{nope", headers={"Content-Type": "application/json"}),
               400, "bad_input")
        _error(client.post("/v1/moderate", json={"policy": "fast"}), 400, "bad_input")  # no image
        # worded like every other validation problem of icm (icm.validation)
        wrong = _error(client.post("/v1/moderate", json={"image": "x", "rules": [1]}), 400, "bad_input")
        assert wrong["message"] == "invalid request: rules[0]: Input should be a valid string"
        _error(client.post("/v1/moderate", json={"image": "data:image/png;base64,@@@@"}), 400, "bad_image_url")
        _error(client.post("/v1/moderate", json={"image": "not a url"}), 400, "bad_image_url")
        _error(client.post("/v1/moderate", files={"file": ("a.png", png_bytes(1), "image/png")}), 400, "bad_input")
        image = data_url(png_bytes(2))
        _error(client.post("/v1/moderate", json={"image": image, "policy": "nope"}), 404, "unknown_policy")
        _error(client.post("/v1/moderate", json={"image": image, "policy": "fast@7"}), 404, "unknown_policy")
        _error(client.post("/v1/moderate", json={"image": image, "policy": "fast@x"}), 400, "bad_input")
        _error(client.post("/v1/moderate", json={"image": image, "policy": "fast", "rules": ["nope"]}),
               400, "bad_input")
        _error(client.post("/v1/moderate", json={"image": image, "explain": "sometimes"}), 400, "bad_input")
        _error(client.get("/v1/nothing-here"), 404, "not_found")
        _error(client.delete("/v1/moderate"), 405, "method_not_allowed")
        # remote URLs are refused: no server-side fetching unless an operator allows a host
        _error(client.post("/v1/moderate", json={"image": "https://example.com/a.png"}), 400, "remote_url_refused")
        _error(client.post("/v1/moderate", json={"image": "http://127.0.0.1:1/a.png"}), 400, "remote_url_refused")
        assert client.get("/healthz").status_code == 200
        assert client.post("/v1/moderate", json={"image": image, "policy": "fast"}).status_code == 200


def test_keys_and_scopes(serve, db_url) -> None:
    server = serve(db_url)
    image = {"image": data_url(png_bytes(3)), "policy": "fast"}
    with httpx2.Client(base_url=server.url) as anonymous:
        _error(anonymous.post("/v1/moderate", json=image), 401, "unauthorized")
        _error(anonymous.get("/v1/policies"), 401, "unauthorized")
        _error(anonymous.post("/v1/moderate", json=image, headers={"Authorization": "Bearer icm_wrong"}),
               401, "unauthorized")
        _error(anonymous.post("/v1/moderate", json=image, headers={"Authorization": "Basic abc"}), 401, "unauthorized")
        assert anonymous.get("/healthz").status_code == 200  # operations need no key
        assert anonymous.get("/readyz").status_code == 200
    with server.client("review") as reviewer:
        _error(reviewer.post("/v1/moderate", json=image), 403, "forbidden")
        _error(reviewer.put("/v1/policies/fast", content="id: fast"), 403, "forbidden")
    store = Store(db_url)
    key_id, secret = create_key(store, "soon revoked", ["moderate"])
    with httpx2.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}) as client:
        assert client.post("/v1/moderate", json=image).status_code == 200
        assert store.revoke_key(key_id)
        _error(client.post("/v1/moderate", json=image), 401, "unauthorized")
    store.close()


def test_allowed_hosts_are_fetched_with_limits(serve, sqlite_url, tmp_path) -> None:
    """An operator may allow hosts (here plain http on one loopback port, listed as HOST:PORT);
    the fetch has a size limit."""
    import functools
    import http.server
    import threading

    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "small.png").write_bytes(png_bytes(5))
    (tmp_path / "www" / "big.png").write_bytes(png_bytes(6, size=(512, 512)))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{files.server_address[1]}"
        server = serve(sqlite_url, url_http_hosts=[f"127.0.0.1:{files.server_address[1]}"],
                       max_body_bytes=64 * 1024)
        with server.client("moderate") as client:
            answer = client.post("/v1/moderate", json={"image": f"{base}/small.png", "policy": "fast"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["image"] == f"{base}/small.png"
            _error(client.post("/v1/moderate", json={"image": f"{base}/big.png"}), 413, "too_large")
            _error(client.post("/v1/moderate", json={"image": f"{base}/missing.png"}), 400, "bad_image_url")
            _error(client.post("/v1/moderate", json={"image": "https://example.com/a.png"}), 400,
                   "remote_url_refused")
    finally:
        files.shutdown()


def test_what_cannot_be_judged_is_not_kept(serve, sqlite_url, tmp_path) -> None:
    """Random uploads and a fetched body that is no image leave nothing in the kept images; an
    image judged to need review is kept."""
    import functools
    import http.server
    import os
    import threading

    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "page.png").write_bytes(b"<!doctype html><html><body>not found</body></html>" * 100)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    server = serve(sqlite_url, keep_images="database", url_http_hosts=[f"127.0.0.1:{files.server_address[1]}"],
                   review_sample=0)
    store = Store(sqlite_url)
    try:
        with server.client("moderate") as client:
            blobs = [os.urandom(256 * 1024) for _ in range(5)]
            for blob in blobs:
                answer = client.post("/v1/moderate", files={"image": ("x.jpg", blob, "image/jpeg")},
                                     data={"policy": "fast"})
                _error(answer, 400, "not_an_image")
            url = f"http://127.0.0.1:{files.server_address[1]}/page.png"
            _error(client.post("/v1/moderate", json={"image": url, "policy": "fast"}), 400, "not_an_image")
            judged = client.post("/v1/moderate", json={"image": data_url(png_bytes(50)), "policy": "general"})
        for data in [*blobs, (tmp_path / "www" / "page.png").read_bytes()]:
            assert store.image(hashlib.sha256(data).hexdigest()) is None
        assert judged.status_code == 200 and judged.json()["decision"] == "review", judged.text
        assert store.image(judged.json()["sha256"]) == png_bytes(50)  # a reviewer will look at it
    finally:
        store.close()
        files.shutdown()


@pytest.mark.parametrize("text_input", ["a sentence", ["two", "sentences"], [{"type": "text", "text": "hi"}]])
def test_text_only_moderation_is_refused(serve, sqlite_url, text_input) -> None:
    server = serve(sqlite_url)
    with server.client("moderate") as client:
        error = _error(client.post("/v1/moderations", json={"model": "fast", "input": text_input}), 400,
                       "text_not_supported")
        assert "images" in str(error["message"])


def test_numbers_and_text_the_store_cannot_hold_are_400s(serve, db_url) -> None:
    """Versions in ASCII digits within the database's integer range (400 out of it, 404 for a version
    that does not exist), wherever a policy reference comes in; ids and cursors the store can hold."""
    server = serve(db_url)
    image = data_url(png_bytes(4))
    with server.client("moderate", "review") as client:
        for ref, status, code in [("fast@99999999999999999999", 400, "out_of_range"),
                                  ("fast@2147483648", 400, "out_of_range"), ("fast@0", 400, "out_of_range"),
                                  ("fast@2147483647", 404, "unknown_policy"),
                                  ("fast@³", 400, "bad_input"),  # passes str.isdigit(), fails int()
                                  ("fast@١", 400, "bad_input"),  # Arabic-Indic 1: int() reads it as 1
                                  ("fast@+1", 400, "bad_input"), ("fast@ 1", 400, "bad_input")]:
            _error(client.get(f"/v1/policies/{ref}"), status, code)
            _error(client.post("/v1/moderate", json={"image": image, "policy": ref}), status, code)
            _error(client.post("/v1/moderations", json={"model": ref, "input": [
                {"type": "image_url", "image_url": {"url": image}}]}), status, code)
            if status == 400:
                _error(client.get("/v1/results", params={"policy": ref}), status, code)
        assert client.get("/v1/policies/fast@1").status_code == 200
        # text with a NUL: PostgreSQL cannot compare it, so it never reaches the store
        _error(client.get("/v1/results/res_%00x"), 400, "bad_input")
        _error(client.get("/v1/results", params={"after": "res_\x00"}), 400, "bad_input")
        _error(client.get("/v1/results", params={"sha256": "\x00"}), 400, "bad_input")
        _error(client.get("/v1/policies/fa%00st"), 400, "bad_input")
        _error(client.get("/v1/appeals/apl_%00"), 400, "bad_input")
        _error(client.post("/v1/appeals", json={"result_id": "res_\x00", "text": "why"}), 400, "bad_input")
        # an empty cursor is no cursor: the first page
        assert client.post("/v1/moderate", json={"image": image, "policy": "fast"}).status_code == 200
        first = client.get("/v1/results", params={"after": ""})
        assert first.status_code == 200, first.text
        assert len(first.json()["data"]) == 1
        _error(client.get("/v1/results", params={"after": "res_nope"}), 400, "bad_input")
        _error(client.get("/v1/results", params={"limit": "99999999999999999999"}), 400, "bad_input")
