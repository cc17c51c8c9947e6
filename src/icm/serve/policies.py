"""The policies the service judges with: seeded from the configured names or files, kept in the
store as immutable versions (``id@version``, stored as JSON, which the YAML loader reads), parsed
once per version."""

from __future__ import annotations

import logging
import threading

from icm.errors import InputError
from icm.policy.load import load_policy, parse_policy
from icm.policy.schema import Policy
from icm.serve.bounds import check_text, parse_int
from icm.serve.errors import Conflict, NotFound
from icm.serve.store.database import Store

log = logging.getLogger("icm.serve")


class UnknownPolicy(NotFound):
    code = "unknown_policy"


def split_ref(ref: str) -> tuple[str, int | None]:
    """``general`` -> ("general", None); ``general@2`` -> ("general", 2). A version is ASCII digits
    within the store's integer range (400 otherwise; a version that does not exist is a 404 later)."""
    policy_id, at, version = check_text(ref, "the policy").strip().partition("@")
    if not policy_id:
        raise InputError(f"no policy id in {ref!r}; write ID or ID@VERSION")
    if not at:
        return policy_id, None
    try:
        return policy_id, parse_int(version, "the policy version")
    except InputError as exc:
        raise type(exc)(f"bad policy version in {ref!r}: {exc}; write ID@VERSION with VERSION >= 1") from None


class PolicyCatalog:
    """Resolves ``id`` / ``id@version`` to a Policy; the store holds the truth (several replicas
    share it), parsed versions are kept in memory since a version never changes."""

    def __init__(self, store: Store, default: str) -> None:
        self.store = store
        self.default = default
        self._parsed: dict[tuple[str, int], Policy] = {}
        self._lock = threading.Lock()

    def seed(self, sources: list[str]) -> list[Policy]:
        """Load the configured policies and store each version the store does not have yet."""
        policies = [load_policy(source) for source in sources]
        for policy in policies:
            existing = self.store.policy_version(policy.id, policy.version)
            if existing is None:
                self.store.add_policy_version(policy.id, policy.version, policy.model_dump_json(), None)
            elif parse_policy(existing.text) != policy:
                log.warning(
                    "policy %s v%d differs from the stored version of that number; the stored one "
                    "is served (versions never change: raise the version to publish a change)",
                    policy.id, policy.version,
                )
        return policies

    def resolve(self, ref: str | None) -> Policy:
        policy_id, version = split_ref(ref or self.default)
        if version is not None:
            with self._lock:
                cached = self._parsed.get((policy_id, version))
            if cached is not None:
                return cached
        row = self.store.policy_version(policy_id, version)
        if row is None:
            known = ", ".join(sorted({p.policy_id for p in self.store.policy_versions()}))
            what = f"{policy_id} v{version}" if version is not None else policy_id
            raise UnknownPolicy(f"no policy {what}; known: {known}")
        key = (row.policy_id, row.version)
        with self._lock:
            if key not in self._parsed:
                self._parsed[key] = parse_policy(row.text, origin=f"<stored {row.policy_id}@{row.version}>")
            return self._parsed[key]

    def publish(self, policy_id: str, text: str, created_by: str | None) -> Policy:
        """Validate a policy and store it as the next version of ``policy_id``."""
        policy = parse_policy(text, origin=f"<PUT {policy_id}>")
        if policy.id != policy_id:
            raise InputError(f"the policy's id is {policy.id!r}, not {policy_id!r} as in the URL")
        latest = self.store.policy_version(policy_id)
        version = (latest.version + 1) if latest is not None else policy.version
        policy = policy.model_copy(update={"version": version})
        if not self.store.add_policy_version(policy_id, version, policy.model_dump_json(), created_by):
            raise Conflict(f"{policy_id} v{version} was published at the same time; send it again")
        return policy
