"""What the item page shows: the rules in the order that matters (violated, uncertain, then the
compliant ones folded), the evidence boxes over the image, and the page itself, as first shown
or again after a refused decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from icm.errors import IcmError
from icm.policy.schema import Policy
from icm.results import ModerationResult, Verdict
from icm.serve.review.banking import bank_configs, offers
from icm.serve.review.decision import FINAL_ACTIONS, labelled_action, rule_actions
from icm.serve.review.queue_pages import query
from icm.serve.review.render import render
from icm.serve.review.session import Viewer, reviews_of
from icm.serve.review.statement_view import statement_view
from icm.serve.service import Service, service_of
from icm.serve.store.models import QueueItem, Review, StoredResult
from icm.serve.store.reviews import QueueFilter

# the rules the model found violated or could not assess come first; the compliant ones are folded
_ORDER = {Verdict.violates: 0, Verdict.uncertain: 1, Verdict.complies: 2}


@dataclass(frozen=True)
class Access:
    """An item a viewer may see: theirs to decide (``leased``), or one they reviewed (``mine``)."""

    item: QueueItem
    mine: Review | None
    leased: bool


async def policy_of(service: Service, policy_id: str, version: int) -> Policy | None:
    try:
        return await run_in_threadpool(service.catalog.resolve, f"{policy_id}@{version}")
    except IcmError:
        return None


async def item_view(request: Request, viewer: Viewer, access: Access, row: StoredResult, result: ModerationResult,
                    policy: Policy | None, where: QueueFilter, *, status: int = 200, previous: int | None = None,
                    error: str | None = None, form: dict[str, str] | None = None,
                    decided: dict[str, Any] | None = None) -> HTMLResponse:
    """The item page: as first shown, or again after a refused decision (its error, and the form
    as it was sent)."""
    service = service_of(request)
    appeal_id = access.item.appeal_id
    appeal = await run_in_threadpool(reviews_of(request).appeal, appeal_id) if appeal_id else None
    rules = _rules(result, policy, access.mine)
    if access.mine is not None:
        action_now: str | None = access.mine.action
    else:
        action_now = labelled_action({r["id"]: r["chosen"] for r in rules if r["chosen"]},
                                     {r["id"]: r["action"] for r in rules})
    return render(
        request, "item.html", status, viewer, item=access.item, row=row, result=result,
        rules=rules, boxes=_boxes(result), mine=access.mine, leased=access.leased,
        appeal=appeal, actions=FINAL_ACTIONS, previous=previous, where=where,
        query=query(where), image_kept=bool(row.image_kept and service.images is not None),
        reveal=viewer.user.reveal_by_default, error=error, form=form, action_now=action_now or "",
        default_reason=_default_reason(rules) if access.mine is None else access.mine.reason_rule,
        decided=decided, folded=sum(1 for r in rules if r["folded"]),
        dsa=await statement_view(service, row.id),
        banks=offers(await run_in_threadpool(bank_configs, service), result),
    )


def _rules(result: ModerationResult, policy: Policy | None, mine: Review | None) -> list[dict[str, Any]]:
    """The rules as the item page shows them, numbered for the keys in that order: violated,
    then uncertain, then compliant. None starts chosen (a label is what the reviewer chose, never
    the model's verdict taken over by a submit): only the reviewer's own earlier decision is
    shown as chosen; the model's verdict is its tag, and ``m`` takes the confident ones over."""
    texts = {rule.id: rule for rule in policy.rules} if policy is not None else {}
    actions = rule_actions(result, policy)
    ordered = sorted(result.verdicts, key=lambda v: _ORDER[v.verdict])
    out = []
    for number, verdict in enumerate(ordered, start=1):
        rule = texts.get(verdict.rule_id)
        chosen = mine.labels.get(verdict.rule_id, "") if mine is not None else ""
        out.append({
            "number": number, "id": verdict.rule_id, "verdict": verdict,
            "text": rule.text if rule is not None else "(a question asked with the request)",
            "action": actions[verdict.rule_id], "chosen": chosen,
            "folded": verdict.verdict is Verdict.complies,
        })
    return out


def _default_reason(rules: list[dict[str, Any]]) -> str | None:
    """The reason a decision starts with: the first rule labelled violates (on a fresh item
    none is, so the reason starts empty)."""
    return next((rule["id"] for rule in rules if rule["chosen"] == "violates"), None)


def _boxes(result: ModerationResult) -> list[dict[str, Any]]:
    """Evidence boxes as shares of the image, for drawing over it at any displayed size."""
    width = result.media.get("width")
    height = result.media.get("height")
    if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
        return []
    boxes = []
    for verdict in result.verdicts:
        for evidence in verdict.evidence:
            if evidence.box is None or len(evidence.box) != 4:
                continue
            x, y, w, h = evidence.box
            label = f"{verdict.rule_id}: {evidence.signal or evidence.criterion}"
            if evidence.score is not None:
                label += f" {evidence.score:.2f}"
            if evidence.frame is not None:
                label += f" (frame {evidence.frame})"
            boxes.append({
                "left": 100 * x / width, "top": 100 * y / height,
                "width": 100 * w / width, "height": 100 * h / height,
                "label": label, "verdict": verdict.verdict.value,
            })
    return boxes
