"""Sending statements of reasons to the DSA Transparency Database (``POST /api/v1/statements``).

In batches of at most 100 (the database's limit); 429 and 5xx answers and broken connections are
retried with exponential backoff (``Retry-After`` honoured); a puid the database already holds
(its 422 naming ``existing_puids``) counts as done; statements the database refuses (its 422 by
``statement_N``) are listed and the rest of their batch is sent again (the database stores none of
a batch with an error). A :class:`Ledger` records every accepted puid as soon as its batch is
accepted, so a run that stops half-way is resumed by running it again: it sends only the rest.
A statement that fails validation is never sent.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from icm.dsa.made import Made
from icm.dsa.statement import BATCH_LIMIT
from icm.errors import IcmError

PATH = "/api/v1/statements"


class SubmitError(IcmError):
    """The database could not be reached or refused the submission (a bad token, a 4xx, retries
    spent); what was accepted before stays recorded."""

    code = "submit_failed"


class Ledger(Protocol):
    """Where accepted puids are recorded (the service's store: ``dsa_submissions``)."""

    def submitted(self) -> set[str]: ...

    def record(self, accepted: list[tuple[str, str, str, str | None]]) -> None:
        """(puid, result id, ``created`` or ``existing``, the database's uuid)."""
        ...


@dataclass
class Submission:
    """What one run did."""

    created: int = 0
    existing: int = 0
    skipped: int = 0
    batches: int = 0
    invalid: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    refused: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.created} statements accepted in {self.batches} calls",
                 f"{self.existing} already in the database", f"{self.skipped} recorded by an earlier run"]
        if self.invalid:
            parts.append(f"{len(self.invalid)} not sent: they fail validation")
        if self.refused:
            parts.append(f"{len(self.refused)} refused by the database")
        return ", ".join(parts)


def statements_url(endpoint: str) -> str:
    """The database's base URL (or the full URL of its statements endpoint) -> that endpoint."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(PATH) else endpoint + PATH


@dataclass
class Client:
    """POSTs one batch and retries what may pass on another try."""

    endpoint: str
    token: str
    retries: int = 5
    backoff: float = 1.0
    timeout: float = 60.0
    sleep: Callable[[float], None] = time.sleep

    def post(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        data = json.dumps(payload).encode()
        url = statements_url(self.endpoint)
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=data, method="POST", headers={
                "Authorization": f"Bearer {self.token}", "Accept": "application/json",
                "Content-Type": "application/json",
            })
            wait = self.backoff * 2**attempt
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310 - an http(s) URL
                    return answer.status, _json(answer.read())
            except urllib.error.HTTPError as error:
                status, body = error.code, _json(error.read())
                if status != 429 and status < 500:
                    return status, body
                retry_after = error.headers.get("Retry-After") if error.headers else None
                if retry_after and retry_after.strip().isdigit():
                    wait = float(retry_after)
                reason = f"{status} {body.get('message', '')}".strip()
            except (urllib.error.URLError, OSError) as error:
                reason = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
            if attempt == self.retries:
                raise SubmitError(f"{url} did not accept the batch after {self.retries + 1} tries: {reason}")
            self.sleep(min(wait, 60.0))
        raise AssertionError("unreachable")


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return {"message": raw[:200].decode("utf-8", "replace")}
    return body if isinstance(body, dict) else {"message": str(body)[:200]}


def submit(made: Iterable[Made], client: Client, ledger: Ledger, batch_size: int = BATCH_LIMIT) -> Submission:
    """Send every valid statement the ledger does not hold yet; see the module's description."""
    if not 1 <= batch_size <= BATCH_LIMIT:
        raise ValueError(f"batch_size must be 1..{BATCH_LIMIT}")
    done = ledger.submitted()
    outcome = Submission()
    batch: list[Made] = []
    for item in made:
        if item.puid in done:
            outcome.skipped += 1
            continue
        if item.statement is None:
            outcome.invalid.append((item.puid, item.problems))
            continue
        done.add(item.puid)  # once per run, even if two results named the same puid
        batch.append(item)
        if len(batch) == batch_size:
            _send(batch, client, ledger, outcome)
            batch = []
    if batch:
        _send(batch, client, ledger, outcome)
    return outcome


def _send(batch: list[Made], client: Client, ledger: Ledger, outcome: Submission) -> None:
    pending = list(batch)
    while pending:
        status, body = client.post({"statements": [m.statement.payload() for m in pending if m.statement]})
        outcome.batches += 1
        if status in (200, 201):
            uuids = {s.get("puid"): s.get("uuid") for s in body.get("statements", []) if isinstance(s, dict)}
            ledger.record([(m.puid, m.result_id, "created", uuids.get(m.puid)) for m in pending])
            outcome.created += len(pending)
            return
        errors = body.get("errors") if isinstance(body.get("errors"), dict) else None
        if status == 422 and errors is not None and isinstance(errors.get("existing_puids"), list):
            existing = {str(p) for p in errors["existing_puids"]}
            held = [m for m in pending if m.puid in existing]
            if not held:
                raise SubmitError(f"the database named puids it holds that were not sent: {sorted(existing)[:5]}")
            ledger.record([(m.puid, m.result_id, "existing", None) for m in held])
            outcome.existing += len(held)
            pending = [m for m in pending if m.puid not in existing]
            continue
        if status == 422 and errors is not None and any(k.startswith("statement_") for k in errors):
            bad = {int(k.removeprefix("statement_")) for k in errors
                   if k.startswith("statement_") and k.removeprefix("statement_").isdigit()}
            if not bad or max(bad) >= len(pending):
                raise SubmitError(f"the database refused statements this batch does not have: {sorted(errors)[:5]}")
            outcome.refused += [(pending[i].puid, errors[f"statement_{i}"]) for i in sorted(bad)]
            pending = [m for i, m in enumerate(pending) if i not in bad]
            continue
        raise SubmitError(f"the database answered {status}: {body.get('message') or body}")
