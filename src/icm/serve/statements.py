"""The statements of reasons of stored results: the model's decision or a person's, and one more
for every appeal that changed the decision. Built from the store with :func:`icm.dsa.statement_for`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

from pydantic import ValidationError

from icm.dsa import Case, Made, NoStatement, PersonDecision, SourceType, StatementFacts, statement_for
from icm.dsa.report import AppealRecord, TransparencyReport, transparency_report
from icm.errors import IcmError
from icm.policy.schema import Action, Policy
from icm.results import ModerationResult
from icm.serve.errors import NotFound
from icm.serve.policies import PolicyCatalog
from icm.serve.store.database import Store
from icm.serve.store.dsa import CaseRows, DsaStore
from icm.serve.store.models import Review, StoredResult
from icm.validation import validation_problems


class NoStatementHere(NotFound):
    code = "no_statement"


def _person(review: Review, at: datetime, previous: Action | None = None, appeal: str | None = None) -> PersonDecision:
    violated = tuple(rule for rule, label in review.labels.items() if label == "violates")
    return PersonDecision(action=Action(review.action), violated=violated, reason_rule=review.reason_rule,
                          at=at, previous=previous, appeal=appeal)


class Statements:
    """The statements of a store's results, with the service's defaults for what a request did
    not say (territorial scope, account type, content language)."""

    def __init__(self, store: Store, defaults: StatementFacts | None = None,
                 catalog: PolicyCatalog | None = None) -> None:
        self.dsa = DsaStore(store)
        self.catalog = catalog or PolicyCatalog(store, "")
        self.defaults = defaults or StatementFacts()

    def _policy(self, row: StoredResult) -> Policy | None:
        try:
            return self.catalog.resolve(f"{row.policy_id}@{row.policy_version}")
        except IcmError:
            return None  # its rules then read as violations of the terms (icm.policy.dsa.UNMAPPED)

    def of(self, case: CaseRows) -> tuple[list[Made], str]:
        """The statements of one result, oldest first, and why the newest decision has none
        (empty when it has one)."""
        row = case.result
        result = ModerationResult.model_validate(row.result)
        policy = self._policy(row)
        facts = StatementFacts.model_validate(row.dsa_facts or {}).over(self.defaults)
        source = SourceType(row.source or "voluntary")
        judged = row.created_at
        uploaded = datetime.combine(facts.uploaded, datetime.min.time(), UTC) if facts.uploaded else judged
        made: list[Made] = []
        person = _person(case.reviews[-1], case.reviews[-1].created_at) if case.reviews else None
        why = self._make(made, result, policy, Case(puid=row.id, judged_at=judged, source=source, facts=facts,
                                                   person=person), row.id, uploaded, None)
        current = person.action if person is not None else result.decision
        for appeal, review in case.appeals:
            if appeal.decided_at is None or review is None or appeal.decision is None:
                continue
            if Action(appeal.decision) is current:
                continue  # upheld: the statement in force stands
            decision = _person(review, appeal.decided_at, previous=current, appeal=appeal.id)
            appeal_source = SourceType(appeal.source) if appeal.source else source
            why = self._make(made, result, policy, Case(puid=appeal.id, judged_at=judged, source=appeal_source,
                                                       facts=facts, person=decision), row.id, uploaded, appeal.id)
            if why:
                why = f"appeal {appeal.id} changed the decision to {appeal.decision}: {why}"
            current = decision.action
        return made, why

    @staticmethod
    def _make(made: list[Made], result: ModerationResult, policy: Policy | None, case: Case, result_id: str,
              uploaded: datetime, appeal_id: str | None) -> str:
        decided = case.person.at if case.person is not None else case.judged_at
        try:
            statement = statement_for(result, policy, case)
        except NoStatement as exc:
            return str(exc)
        except ValidationError as exc:
            problems = tuple(p.text() for p in validation_problems(exc))
            made.append(Made(case.puid, result_id, None, problems, uploaded, decided, appeal_id))
            return ""
        made.append(Made(case.puid, result_id, statement, (), uploaded, decided, appeal_id))
        return ""

    def current(self, result_id: str) -> Made:
        """The statement in force for a result; :class:`NoStatementHere` (404) says why there is none."""
        case = self.dsa.case(result_id)
        if case is None:
            raise NotFound(f"no result {result_id!r}")
        made, why = self.of(case)
        if why or not made:
            raise NoStatementHere(f"result {result_id} has no statement of reasons: {why}")
        if made[-1].statement is None:
            raise NoStatementHere(f"the statement of result {result_id} would not pass the database's checks: "
                                  + "; ".join(made[-1].problems))
        return made[-1]

    @staticmethod
    def appeals_of(case: CaseRows) -> list[AppealRecord]:
        """The result's appeals; overturned: decided otherwise than the decision appealed against."""
        current = Action(case.reviews[-1].action) if case.reviews else Action(case.result.decision)
        records = []
        for appeal, _ in case.appeals:
            decided = appeal.decision is not None and appeal.decided_at is not None
            overturned = decided and Action(str(appeal.decision)) is not current
            records.append(AppealRecord(appeal.created_at, appeal.decided_at, overturned))
            if decided:
                current = Action(str(appeal.decision))
        return records

    def report(self, period: str) -> TransparencyReport:
        """The transparency report's counts for ``period`` (``2026-H2`` ...)."""
        made: list[Made] = []
        appeals: list[AppealRecord] = []
        for case in self.dsa.cases():
            made += self.of(case)[0]
            appeals += self.appeals_of(case)
        return transparency_report(period, made, appeals)

    def all(self, since: date | None = None) -> Iterator[Made]:
        """Every statement of the store (decided on ``since`` or later), in the order the results
        were stored."""
        for case in self.dsa.cases():
            made, _ = self.of(case)
            for item in made:
                if since is None or item.decided_at.date() >= since:
                    yield item


class StoreLedger:
    """The record of what the database at ``endpoint`` holds, in the service's store."""

    def __init__(self, store: Store, endpoint: str) -> None:
        from icm.dsa.submit import statements_url

        self.dsa = DsaStore(store)
        self.endpoint = statements_url(endpoint)

    def submitted(self) -> set[str]:
        return self.dsa.submitted(self.endpoint)

    def record(self, accepted: list[tuple[str, str, str, str | None]]) -> None:
        self.dsa.record(self.endpoint, accepted)
