"""A stand-in for the EU DSA Transparency Database's submission API, for tests.

The real database (a Laravel application with MySQL and OpenSearch) cannot run here, so this
server applies its validation rules as its source states them (``StatementStoreRequest.php`` and
``GroupedSubmissionsService::multi_rules``, schema of 1 July 2025), written out again here rule by
rule, independently of ``icm.dsa.Statement``, and answers in the database's shapes: ``201`` with
``{"statements": [...]}``; ``422`` with ``{"errors": {"statement_N": {field: [message]}}}`` when
any statement is invalid (then none is stored); ``422`` with ``{"message": ..., "errors":
{"puid": [...], "existing_puids": [...]}}`` when a puid was already used; ``401`` without the
token. Only the value lists are shared with icm (they are the database's, copied verbatim).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from icm.policy import dsa_vocabulary as V

MONETARY = ["DECISION_MONETARY_SUSPENSION", "DECISION_MONETARY_TERMINATION", "DECISION_MONETARY_OTHER"]
PROVISION = ["DECISION_PROVISION_PARTIAL_SUSPENSION", "DECISION_PROVISION_TOTAL_SUSPENSION",
             "DECISION_PROVISION_PARTIAL_TERMINATION", "DECISION_PROVISION_TOTAL_TERMINATION"]
ACCOUNT = ["DECISION_ACCOUNT_SUSPENDED", "DECISION_ACCOUNT_TERMINATED"]


def _present(s: dict[str, Any], name: str) -> bool:
    """Laravel's ``required``: present, not null, not an empty string or array."""
    value = s.get(name)
    return value is not None and value != "" and value != []


def _date_ok(value: Any, earliest: str | None, latest: str) -> str | None:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return "does not match the format YYYY-MM-DD."
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return "does not match the format YYYY-MM-DD."
    if earliest and day < date.fromisoformat(earliest):
        return f"must be a date after or equal to {earliest}."
    if day > date.fromisoformat(latest):
        return f"must be a date before or equal to {latest}."
    return None


def validate(s: dict[str, Any]) -> dict[str, list[str]]:
    """The database's validation errors of one statement, by field (empty: accepted)."""
    errors: dict[str, list[str]] = {}

    def err(field: str, message: str) -> None:
        errors.setdefault(field, []).append(f"The {field.replace('_', ' ')} {message}")

    def one_of(field: str, allowed: list[str], nullable: bool = True) -> None:
        value = s.get(field)
        if value is None and nullable:
            return
        if value not in allowed:
            err(field, "is invalid.")

    def each_of(field: str, allowed: list[str]) -> None:
        value = s.get(field)
        if value is None:
            return
        if not isinstance(value, list):
            err(field, "must be an array.")
        elif any(v not in allowed for v in value):
            err(field, "is invalid.")

    def max_len(field: str, limit: int) -> None:
        value = s.get(field)
        if isinstance(value, str) and len(value) > limit:
            err(field, f"must not be greater than {limit} characters.")

    decisions = ["decision_visibility", "decision_monetary", "decision_provision", "decision_account"]
    if not any(_present(s, d) for d in decisions):
        for d in decisions:
            err(d, "field is required when none of the other restrictions are present.")
    each_of("decision_visibility", list(V.VISIBILITIES))
    visibility = s.get("decision_visibility") if isinstance(s.get("decision_visibility"), list) else []
    if "DECISION_VISIBILITY_OTHER" in visibility and not _present(s, "decision_visibility_other"):
        err("decision_visibility_other", "field is required when decision visibility is other.")
    max_len("decision_visibility_other", 500)
    one_of("decision_monetary", MONETARY)
    if s.get("decision_monetary") == "DECISION_MONETARY_OTHER" and not _present(s, "decision_monetary_other"):
        err("decision_monetary_other", "field is required when decision monetary is other.")
    one_of("decision_provision", PROVISION)
    one_of("decision_account", ACCOUNT)
    one_of("account_type", list(V.ACCOUNT_TYPES))
    each_of("category_specification", list(V.KEYWORDS))
    max_len("category_specification_other", 500)

    if not _present(s, "decision_ground"):
        err("decision_ground", "field is required.")
    else:
        one_of("decision_ground", list(V.DECISION_GROUNDS), nullable=False)
    url = s.get("decision_ground_reference_url")
    if url is not None and not (isinstance(url, str) and re.match(r"^https?://[^\s/$.?#][^\s]*$", url)):
        err("decision_ground_reference_url", "must be a valid URL.")
    max_len("decision_ground_reference_url", 500)
    illegal = s.get("decision_ground") == "DECISION_GROUND_ILLEGAL_CONTENT"
    incompatible = s.get("decision_ground") == "DECISION_GROUND_INCOMPATIBLE_CONTENT"
    for field, limit in (("illegal_content_legal_ground", 500), ("illegal_content_explanation", 2000)):
        if illegal and not _present(s, field):
            err(field, "field is required when decision ground is illegal content.")
        if illegal:
            max_len(field, limit)
    for field, limit in (("incompatible_content_ground", 500), ("incompatible_content_explanation", 2000)):
        if incompatible and not _present(s, field):
            err(field, "field is required when decision ground is incompatible content.")
        if incompatible:
            max_len(field, limit)
    if incompatible:
        one_of("incompatible_content_illegal", ["Yes", "No"])

    if not _present(s, "content_type"):
        err("content_type", "field is required.")
    else:
        each_of("content_type", list(V.CONTENT_TYPES))
    content_types = s.get("content_type") if isinstance(s.get("content_type"), list) else []
    if "CONTENT_TYPE_OTHER" in content_types and not _present(s, "content_type_other"):
        err("content_type_other", "field is required when content is other.")

    if not _present(s, "category"):
        err("category", "field is required.")
    else:
        one_of("category", list(V.CATEGORIES), nullable=False)
    each_of("category_addition", list(V.CATEGORIES))
    each_of("territorial_scope", list(V.COUNTRIES))
    one_of("content_language", sorted(V.LANGUAGES))

    for field, earliest in (("content_date", "2000-01-01"), ("application_date", "2020-01-01")):
        if not _present(s, field):
            err(field, "field is required.")
        elif problem := _date_ok(s[field], earliest, "2038-01-01"):
            err(field, problem)
    for field in ("end_date_account_restriction", "end_date_monetary_restriction",
                  "end_date_service_restriction", "end_date_visibility_restriction"):
        if s.get(field) is not None and (problem := _date_ok(s[field], None, "2038-01-01")):
            err(field, problem)
        elif (s.get(field) is not None and isinstance(s.get("application_date"), str)
              and s[field] < s["application_date"]):  # the API documentation's rule for end dates
            err(field, "must be a date after or equal to application date.")

    if not _present(s, "decision_facts"):
        err("decision_facts", "field is required.")
    max_len("decision_facts", 5000)
    if not _present(s, "source_type"):
        err("source_type", "field is required.")
    else:
        one_of("source_type", list(V.SOURCE_TYPES), nullable=False)
    max_len("source_identity", 500)
    for field, allowed in (("automated_detection", ["Yes", "No"]), ("automated_decision", list(V.AUTOMATED_DECISIONS))):
        if not _present(s, field):
            err(field, "field is required.")
        else:
            one_of(field, allowed, nullable=False)
    puid = s.get("puid")
    if not _present(s, "puid"):
        err("puid", "field is required.")
    elif not isinstance(puid, str) or len(puid) > 500 or not re.fullmatch(r"[a-zA-Z0-9\-_]+", puid):
        err("puid", "format is invalid.")
    content_id = s.get("content_id")
    if content_id is not None:
        if not isinstance(content_id, dict):
            err("content_id", "must be an array.")
        elif "EAN-13" in content_id and not re.fullmatch(r"[0-9]{13}", str(content_id["EAN-13"])):
            err("content_id.EAN-13", "format is invalid.")
    return errors


class StandIn:
    """The database's state: stored statements by puid, the calls it answered, a script of
    answers (``script``: per call, a status to answer instead, or None to answer normally; for
    429/5xx and interruptions) and puids whose statements it refuses (``refuse``)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.stored: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[int, list[str]]] = []  # (status, puids sent)
        self.script: list[int | None] = []
        self.refuse: set[str] = set()
        self.lock = threading.Lock()

    def handle(self, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"message": "Unauthenticated."}
        try:
            payload = json.loads(body)
        except ValueError:
            return 422, {"message": "The statements field is required.", "errors": {"statements": ["required"]}}
        statements = payload.get("statements") if isinstance(payload, dict) else None
        if not isinstance(statements, list) or not 1 <= len(statements) <= 100:
            return 422, {"message": "The statements field must have between 1 and 100 items.",
                         "errors": {"statements": ["The statements field must have between 1 and 100 items."]}}
        puids = [s.get("puid") for s in statements if isinstance(s, dict)]
        with self.lock:
            status = self.script.pop(0) if self.script else None
            if status is not None:
                self.calls.append((status, puids))
                return status, {"message": "Server Error" if status >= 500 else "Too Many Attempts."}
            errors = {f"statement_{i}": e for i, s in enumerate(statements) if (e := validate(s))}
            for i, puid in enumerate(puids):
                if puid in self.refuse:
                    errors.setdefault(f"statement_{i}", {})["puid"] = ["Refused by the stand-in for this test."]
            if errors:
                self.calls.append((422, puids))
                return 422, {"errors": errors}
            duplicates = sorted({p for p in puids if p in self.stored}
                                | {p for p in puids if puids.count(p) > 1})
            if duplicates:
                self.calls.append((422, puids))
                message = "The platform identifier(s) are not all unique within this call."
                return 422, {"message": message, "errors": {"puid": [message], "existing_puids": duplicates}}
            out = []
            for s in statements:
                self.stored[s["puid"]] = s
                out.append({**s, "uuid": f"uuid-{len(self.stored)}", "created_at": "2026-12-02 08:00:00"})
            self.calls.append((201, puids))
            return 201, {"statements": out}


@contextmanager
def serve_standin(token: str = "test-token") -> Iterator[tuple[StandIn, str]]:
    """A running stand-in on a free loopback port: (its state, its base URL)."""
    state = StandIn(token)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path != "/api/v1/statements":
                status, answer = 404, {"message": "Not Found"}
            else:
                status, answer = state.handle(self.headers, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 429:
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
