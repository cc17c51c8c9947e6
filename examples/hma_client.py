"""An HMA-style client of ``icm serve``: the calls a Hasher-Matcher-Actioner client (or Coop's HMA
integration) makes, unchanged, against icm's HMA-compatible endpoints.

    python examples/hma_client.py http://127.0.0.1:8000 ADMIN_KEY BANK_IMAGE COPY_IMAGE OTHER_IMAGE

Creates the bank ``EXAMPLE_KNOWN_BAD`` (if it is not there), adds BANK_IMAGE to it, then hashes
and looks up COPY_IMAGE (an altered copy: it matches) and OTHER_IMAGE (a distinct image: it does
not), removes the content again, and prints one JSON line per step. Exit status 1 when an answer
is not what an HMA client expects.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx2

BANK = "EXAMPLE_KNOWN_BAD"


def _check(answer: httpx2.Response, *statuses: int) -> dict | list:
    if answer.status_code not in statuses:
        raise SystemExit(f"{answer.request.method} {answer.request.url.path}: {answer.status_code} {answer.text}")
    return answer.json()


def main(base_url: str, key: str, bank_image: Path, copy_image: Path, other_image: Path, rule: str) -> int:
    steps: list[tuple[str, object]] = []
    with httpx2.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as hma:
        banks = _check(hma.get("/c/banks"), 200)
        if BANK not in [b["name"] for b in banks]:  # type: ignore[index]
            steps.append(("create", _check(hma.post("/c/banks", json={"name": BANK, "rules": [rule]}), 201)))
        with bank_image.open("rb") as photo:
            added = _check(hma.post(f"/c/bank/{BANK}/content", files={"photo": photo},
                                    data={"metadata": json.dumps({"content_id": "example-1"})}), 200)
        steps.append(("add", added))
        with copy_image.open("rb") as photo:
            pdq = _check(hma.post("/h/hash", files={"photo": photo}), 200)["pdq"]  # type: ignore[call-overload]
        steps.append(("hash", pdq))
        found = _check(hma.get("/m/lookup", params={"signal_type": "pdq", "signal": pdq}), 200)
        steps.append(("lookup copy", found))
        with other_image.open("rb") as photo:
            other = _check(hma.post("/m/lookup", files={"photo": photo}), 200)
        steps.append(("lookup other", other))
        deleted = _check(hma.delete(f"/c/bank/{BANK}/content/example-1"), 200)
        steps.append(("delete", deleted))
        after = _check(hma.get("/m/lookup", params={"signal_type": "pdq", "signal": pdq}), 200)
        steps.append(("lookup after delete", after))
    for step, answer in steps:
        print(json.dumps({"step": step, "answer": answer}))
    ok = (
        [m["bank_content_id"] for m in found.get(BANK, [])] == ["example-1"]  # type: ignore[union-attr]
        and int(found[BANK][0]["distance"]) <= 31  # type: ignore[index,call-overload]
        and BANK not in other.get("pdq", {})  # type: ignore[union-attr]
        and deleted == {"deleted": 1}
        and BANK not in after
    )
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) not in (6, 7):
        raise SystemExit(__doc__)
    url, key_, bank, copy, other = sys.argv[1:6]
    sys.exit(main(url, key_, Path(bank), Path(copy), Path(other), sys.argv[6] if len(sys.argv) == 7 else "nsfw"))
