"""The openai backend in decisions mode against the real ``icm serve`` on loopback: one
``POST /v1/decisions`` per image, its predicates named after the served policy's rules."""

from __future__ import annotations

import base64
from pathlib import Path

from serve.live import FAST_POLICY

from icm.backends.local.engine import LocalBackend
from icm.backends.openai_compat import OpenAIBackend
from icm.media import load_image
from icm.policy.load import load_policy
from icm.results import Verdict

EXAMPLES = Path(__file__).parents[2] / "examples" / "images"


def test_the_openai_backend_judges_through_icm_serve_decisions(serve, sqlite_url, monkeypatch) -> None:
    server = serve(sqlite_url)
    monkeypatch.setenv("ICM_SERVE_KEY", server.key("moderate"))
    policy = load_policy(FAST_POLICY)
    backend = OpenAIBackend(f"fast@{server.url}/v1", explain="none", api_key_env="ICM_SERVE_KEY", max_retries=0)
    image = load_image(EXAMPLES / "astronaut.jpg")
    (verdict,) = backend.judge(image, policy)
    assert backend.info().models["scoring"] == "decisions"  # icm serve offers them: found and remembered
    # The server judged the very image sent (the backend's JPEG data URL) with its local engine.
    sent = base64.b64decode(backend._see(image)[0].split(",", 1)[1])
    (expected,) = LocalBackend().judge(load_image("sent.jpg", data=sent), policy)
    assert verdict.rule_id == "nsfw"
    assert verdict.verdict is expected.verdict is not Verdict.uncertain
    assert verdict.probability == expected.probability
    backend.close()
