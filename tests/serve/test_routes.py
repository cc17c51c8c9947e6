"""The native API against a live server: moderate (upload and data URL), the store's cache,
results by id and by filter, policies and their versions, keys and scopes, restarts."""

from __future__ import annotations

import json

import httpx2
from serve.live import data_url, png_bytes

from icm.results import ModerationResult


def test_upload_is_judged_stored_and_read_back(serve, db_url) -> None:
    server = serve(db_url)
    with server.client("moderate") as client:
        answer = client.post("/v1/moderate", files={"image": ("cat.png", png_bytes(1), "image/png")},
                             data={"policy": "fast"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert answer.headers["x-icm-cache"] == "miss"
        assert answer.headers["x-request-id"]
        result = ModerationResult.model_validate(body)  # the CLI's schema, plus its id
        assert body["id"].startswith("res_")
        assert result.image == "cat.png"
        assert result.policy.id == "fast" and result.policy.version == 1
        assert [v.rule_id for v in result.verdicts] == ["nsfw"]
        assert result.error is None
        again = client.get(f"/v1/results/{body['id']}")
        assert again.status_code == 200
        assert again.json() == body


def test_data_url_and_the_cache(serve, sqlite_url) -> None:
    server = serve(sqlite_url)
    image = data_url(png_bytes(2))
    with server.client("moderate") as client:
        first = client.post("/v1/moderate", json={"image": image, "policy": "fast"})
        assert first.status_code == 200, first.text
        second = client.post("/v1/moderate", json={"image": image, "policy": "fast"})
        assert second.headers["x-icm-cache"] == "hit"
        # the judgement is reused; the answer is stored as its own result
        assert second.json()["id"] != first.json()["id"]
        assert {**second.json(), "id": None} == {**first.json(), "id": None}
        fresh = client.post("/v1/moderate", json={"image": image, "policy": "fast", "fresh": True})
        assert fresh.headers["x-icm-cache"] == "miss"
        assert fresh.json()["id"] != first.json()["id"]
        assert fresh.json()["sha256"] == first.json()["sha256"]
        # another rule subset is another judgement
        subset = client.post("/v1/moderate", json={"image": image, "policy": "general", "rules": ["sexual-nudity"]})
        assert subset.status_code == 200, subset.text
        assert [v["rule_id"] for v in subset.json()["verdicts"]] == ["sexual-nudity"]
        assert subset.headers["x-icm-cache"] == "miss"


def test_explain_selects_the_explanations_of_the_answer(serve, sqlite_url) -> None:
    server = serve(sqlite_url)
    with server.client("moderate") as client:
        full = client.post("/v1/moderate", json={"image": data_url(png_bytes(3)), "policy": "fast"}).json()
        assert full["verdicts"][0]["explanation"]
        bare = client.post("/v1/moderate",
                           json={"image": data_url(png_bytes(3)), "policy": "fast", "explain": "none"}).json()
        assert bare["verdicts"][0]["rule_id"] == full["verdicts"][0]["rule_id"]
        assert bare["verdicts"][0]["explanation"] == ""
        assert client.get(f"/v1/results/{full['id']}").json()["verdicts"][0]["explanation"]  # stored whole


def test_results_survive_a_restart(serve, db_url) -> None:
    first = serve(db_url)
    with first.client("moderate") as client:
        stored = client.post("/v1/moderate", json={"image": data_url(png_bytes(4)), "policy": "fast"}).json()
    key = first.key("moderate")
    first.stop()
    second = serve(db_url)
    with httpx2.Client(base_url=second.url, headers={"Authorization": f"Bearer {key}"}) as client:
        assert client.get(f"/v1/results/{stored['id']}").json() == stored
        again = client.post("/v1/moderate", json={"image": data_url(png_bytes(4)), "policy": "fast"})
        assert again.headers["x-icm-cache"] == "hit"
        assert {**again.json(), "id": stored["id"]} == stored


def test_results_list_filters_and_pages(serve, db_url) -> None:
    server = serve(db_url)
    with server.client("moderate") as client:
        ids = [client.post("/v1/moderate", json={"image": data_url(png_bytes(10 + i)), "policy": "fast"}).json()["id"]
               for i in range(3)]
    with server.client("review") as reviewer:
        page = reviewer.get("/v1/results", params={"limit": 2}).json()
        assert [r["id"] for r in page["data"]] == ids[:2]
        rest = reviewer.get("/v1/results", params={"limit": 2, "after": page["next"]}).json()
        assert [r["id"] for r in rest["data"]] == ids[2:]
        assert rest["next"] is None
        decision = page["data"][0]["decision"]
        same = reviewer.get("/v1/results", params={"decision": decision, "policy": "fast@1"}).json()["data"]
        assert same and all(r["decision"] == decision for r in same)
        other = "block" if decision != "block" else "allow"
        others = reviewer.get("/v1/results", params={"decision": other}).json()["data"]
        assert all(r["decision"] == other for r in others)
        assert reviewer.get("/v1/results", params={"after": "res_nope"}).status_code == 400
    # a moderate key sees only its own results
    with server.client("moderate", "review") as other_key:
        assert other_key.get("/v1/results").json()["data"]  # review scope: sees all
    with httpx2.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.key('admin')}"}) as admin:
        assert len(admin.get("/v1/results").json()["data"]) == 3


def test_a_moderate_key_reads_only_its_own_results(serve, sqlite_url) -> None:
    server = serve(sqlite_url)
    with server.client("moderate") as mine:
        stored = mine.post("/v1/moderate", json={"image": data_url(png_bytes(20)), "policy": "fast"}).json()
    from icm.serve.auth import create_key
    from icm.serve.store import Store

    store = Store(sqlite_url)
    other = create_key(store, "another platform", ["moderate"])[1]
    store.close()
    with httpx2.Client(base_url=server.url, headers={"Authorization": f"Bearer {other}"}) as client:
        assert client.get(f"/v1/results/{stored['id']}").status_code == 404
        assert client.get("/v1/results").json()["data"] == []


def test_a_cache_hit_is_the_callers_own_result(serve, db_url) -> None:
    """Key B sends the bytes key A sent: B reuses A's judgement, and gets a result of its own."""
    from icm.serve.auth import create_key
    from icm.serve.store import Store

    server = serve(db_url)
    store = Store(db_url)
    other = create_key(store, "another platform", ["moderate"])[1]
    data = png_bytes(21)
    with server.client("moderate") as a, httpx2.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {other}"}
    ) as b:
        first = a.post("/v1/moderate", files={"image": ("holiday.png", data, "image/png")}, data={"policy": "fast"},
                       headers={"X-Request-ID": "a-1"})
        assert first.status_code == 200 and first.headers["x-icm-cache"] == "miss", first.text
        hit = b.post("/v1/moderate", files={"image": ("avatar.png", data, "image/png")}, data={"policy": "fast"},
                     headers={"X-Request-ID": "b-1"})
        assert hit.status_code == 200 and hit.headers["x-icm-cache"] == "hit", hit.text
        mine, theirs = hit.json(), first.json()
        assert mine["id"] != theirs["id"]
        assert mine["image"] == "avatar.png" and theirs["image"] == "holiday.png"
        assert mine["verdicts"] == theirs["verdicts"] and mine["decision"] == theirs["decision"]
        # B reads, lists and appeals its own result, and still not A's
        assert b.get(f"/v1/results/{mine['id']}").json() == mine
        assert b.get(f"/v1/results/{theirs['id']}").status_code == 404
        assert [r["id"] for r in b.get("/v1/results").json()["data"]] == [mine["id"]]
        assert [r["id"] for r in a.get("/v1/results").json()["data"]] == [theirs["id"]]
        appeal = b.post("/v1/appeals", json={"result_id": mine["id"], "text": "it is my own drawing"})
        assert appeal.status_code == 201, appeal.text
    rows = {r: store.result(r) for r in (mine["id"], theirs["id"])}
    store.close()
    assert rows[mine["id"]].request_id == "b-1" and rows[theirs["id"]].request_id == "a-1"
    assert rows[mine["id"]].key_id != rows[theirs["id"]].key_id


def test_policies_are_listed_published_and_versioned(serve, db_url) -> None:
    server = serve(db_url)
    with server.client("moderate") as client:
        listing = client.get("/v1/policies").json()
        assert listing["default"].endswith("fast.yaml")
        by_id = {p["id"]: p for p in listing["data"]}
        assert by_id["fast"]["latest"] == 1 and by_id["fast"]["rules"] == ["nsfw"]
        assert "general" in by_id
        assert client.get("/v1/policies/fast").json()["rules"][0]["id"] == "nsfw"
        assert client.get("/v1/policies/nope").status_code == 404
        stricter = client.get("/v1/policies/fast").json()
        stricter["rules"][0]["criteria"][0]["signals"] = ["opennsfw:nsfw>=0.5"]
        assert client.put("/v1/policies/fast", content=json.dumps(stricter)).status_code == 403
    with server.client("admin") as admin:
        published = admin.put("/v1/policies/fast", content=json.dumps(stricter),
                              headers={"Content-Type": "application/json"})
        assert published.status_code == 200, published.text
        assert published.json()["version"] == 2
        assert admin.get("/v1/policies/fast").json()["version"] == 2
        signals = admin.get("/v1/policies/fast@1").json()["rules"][0]["criteria"][0]["signals"]
        assert [s["threshold"] for s in signals] == [0.85]
        signals = admin.get("/v1/policies/fast@2").json()["rules"][0]["criteria"][0]["signals"]
        assert [s["threshold"] for s in signals] == [0.5]
        invalid = admin.put("/v1/policies/fast", content="id: fast\nrules:\n  - id: Bad Id\n    text: x\n")
        assert invalid.status_code == 400
        assert invalid.json()["error"]["code"] == "bad_input"
        assert "rules[0].id" in invalid.json()["error"]["message"]
        assert admin.put("/v1/policies/other", content=json.dumps(stricter)).status_code == 400  # id mismatch
        # both versions stay addressable for judging
        image = data_url(png_bytes(30))
        old = admin.post("/v1/moderate", json={"image": image, "policy": "fast@1"}).json()
        new = admin.post("/v1/moderate", json={"image": image, "policy": "fast"}).json()
        assert old["policy"] == {"id": "fast", "version": 1}
        assert new["policy"] == {"id": "fast", "version": 2}
        assert old["id"] != new["id"]
