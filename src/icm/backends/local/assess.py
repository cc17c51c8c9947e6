"""From an image's signals to rule verdicts: criterion tests, probabilities and grounded reasons.

Pure functions over :class:`Observations`, so the mapping from detector output to verdict can be
checked without running a detector.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from icm.policy.schema import Criterion, Policy, Rule
from icm.results import Evidence, RuleVerdict, Verdict
from icm.signals import Signal, SignalRef

URL = re.compile(
    r"(?i)\b(?:https?://|www\.)\S+|\b[a-z0-9-]+\.(?:com|net|org|io|ly|me|ru|cn|xyz|top|link|shop|info|biz|co)\b(?:/\S*)?"
)
EMAIL = re.compile(r"(?i)\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
#: Regions whose national format a number without a country code is read in. A number written
#: with its country code (+49 30 901820, 0049 ...) is found whatever its country.
PHONE_REGIONS = ("US", "GB")
#: Observations cited per signal of a criterion (two faces, three keyword lines ...), strongest first.
MAX_EVIDENCE = 5

#: Finds the first match in a text and returns what it matched.
Finder = Callable[[str], str | None]


def _search(regex: re.Pattern[str]) -> Finder:
    def find(text: str) -> str | None:
        found = regex.search(text)
        return found.group(0) if found else None

    return find


def find_phone_number(text: str) -> str | None:
    """The first phone number in ``text``, as written, by libphonenumber's rules.

    A number counts when it has a full length for its country (``is_possible_number``, not just a
    local-only length), not only when its range is assigned (``is_valid_number``): fictional and
    new ranges ("+1 555-123-4567", the UK's 07700 900xxx) are contact details on a flyer all the
    same, and a short run of digits (a year, a price, a room number) is not a phone number.
    """
    import phonenumbers
    from phonenumbers import Leniency, PhoneNumberMatcher, ValidationResult

    for region in PHONE_REGIONS:
        for match in PhoneNumberMatcher(text, region, leniency=Leniency.POSSIBLE):
            if phonenumbers.is_possible_number_with_reason(match.number) == ValidationResult.IS_POSSIBLE:
                return str(match.raw_string)
    return None


_BUILTIN_FINDERS: dict[str, Finder] = {
    "text:url": _search(URL),
    "text:email": _search(EMAIL),
    "text:phone": find_phone_number,
    "qr:url": _search(URL),
}
#: The signals whose text the ``text:`` names (but ``text:any``, OCR's own) search: OCR lines and
#: the payloads of decoded QR codes and barcodes, where the policy reads codes.
TEXT_SOURCES = ("text:any", "qr:any")


@dataclass
class Observations:
    """All signals of one image, from the detectors that ran on it."""

    signals: list[Signal]
    sources: set[str]  # detectors that ran: a missing detection from one of them means "absent"
    width: int = 0  # original image size, for describing where a box is
    height: int = 0
    scale: float = 1.0  # original pixels per frame pixel

    def of(self, key: str) -> list[Signal]:
        return [s for s in self.signals if s.key == key]


@dataclass
class CriterionAssessment:
    criterion: Criterion
    assessed: bool
    holds: bool = False
    probability: float = 0.0
    evidence: list[Evidence] = field(default_factory=list)
    strongest: tuple[SignalRef, float] | None = None  # best score seen, for "not found" reasons


def _text_matches(ref: SignalRef, criterion: Criterion, lines: list[Signal]) -> list[Signal]:
    """Text lines and code payloads (or the whole OCR text, for phrases split across lines) that
    match the reference; each hit keeps the key of the signal its text was read from."""
    if ref.name == "keywords":
        finders = [
            _search(re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, k.split())) + r"(?!\w)", re.I))
            for k in criterion.keywords
        ]
    elif ref.name == "patterns":
        finders = [_search(re.compile(p, re.I)) for p in criterion.patterns]
    else:
        finders = [_BUILTIN_FINDERS[ref.key]]
    hits = []
    for line in lines:
        for find in finders:
            found = find(line.text or "")
            if found is not None:
                hits.append(line.model_copy(update={"text": found}))
                break
    ocr = [line for line in lines if line.key == "text:any"]  # a code's payload is whole already
    if not hits and len(ocr) > 1:
        joined = " ".join(line.text or "" for line in ocr)
        for find in finders:
            found = find(joined)
            if found is not None:
                score = min(line.score for line in ocr)
                hits.append(Signal(key="text:any", score=score, text=found))
                break
    return hits


def assess_criterion(criterion: Criterion, obs: Observations) -> CriterionAssessment:
    refs = [r for r in criterion.signals if r.source in obs.sources]
    if not refs:
        return CriterionAssessment(criterion=criterion, assessed=False)
    result = CriterionAssessment(criterion=criterion, assessed=True)
    for ref in refs:
        if ref.source == "text" and ref.name == "any":
            candidates = obs.of("text:any")
        elif ref.source == "text":
            candidates = _text_matches(ref, criterion, [s for key in TEXT_SOURCES for s in obs.of(key)])
        elif ref.key == "qr:url":
            candidates = _text_matches(ref, criterion, obs.of("qr:any"))
        else:
            candidates = obs.of(ref.key)
        score = max((s.score for s in candidates), default=0.0)
        probability = ref.probability(score)
        if result.strongest is None or probability > ref.probability(result.strongest[1]):
            result.strongest = (ref, score)
        result.probability = max(result.probability, probability)
        found = [c for c in sorted(candidates, key=lambda s: -s.score) if ref.holds(c.score)]
        if ref.holds(score) and found:
            result.holds = True
            result.evidence += [
                Evidence(
                    criterion=criterion.id,
                    signal=ref.key,
                    score=round(c.score, 4),
                    box=_scale_box(c.box, obs.scale),
                    frame=c.frame,
                    text=c.text,
                    found_in=c.key if ref.source == "text" and ref.name != "any" else None,
                )
                for c in found[:MAX_EVIDENCE]
            ]
        elif ref.holds(score):  # a "<" test that holds because nothing was seen
            result.holds = True
            result.evidence.append(Evidence(criterion=criterion.id, signal=ref.key, score=score))
    return result


def _scale_box(box: list[int] | None, scale: float) -> list[int] | None:
    if box is None or scale == 1.0:
        return box
    return [round(v * scale) for v in box]


def judge_rule(rule: Rule, policy: Policy, obs: Observations) -> RuleVerdict:
    assessments = [assess_criterion(c, obs) for c in rule.criteria]
    assessed = [a for a in assessments if a.assessed]
    unassessed = [a.criterion.id for a in assessments if not a.assessed]
    holding = [a for a in assessed if a.holds]
    probability: float | None = max((a.probability for a in assessed), default=None)
    if rule.match == "all":
        probability = min((a.probability for a in assessed), default=None)
        if assessed and len(holding) < len(assessed):
            verdict = Verdict.complies
        elif unassessed:
            verdict = Verdict.uncertain
        else:
            verdict = Verdict.violates
    elif holding:
        verdict = Verdict.violates
    elif not assessed or (unassessed and policy.uncertainty.partial_rule == "uncertain"):
        verdict = Verdict.uncertain
    else:
        verdict = Verdict.complies
    evidence = [e for a in holding for e in a.evidence] if verdict is Verdict.violates else []
    if verdict is Verdict.uncertain:
        # What was assessed bounds the rule's probability but is not it: a 0.00 here would read
        # as "certainly not". The scores of the assessed criteria are in the explanation.
        probability = None
    return RuleVerdict(
        rule_id=rule.id,
        verdict=verdict,
        probability=None if probability is None else round(probability, 4),
        evidence=evidence,
        unassessed=unassessed,
        explanation=explain(rule, verdict, assessments, obs),
    )


def judge_policy(policy: Policy, obs: Observations) -> list[RuleVerdict]:
    return [judge_rule(rule, policy, obs) for rule in policy.rules]


# --- explanations ---------------------------------------------------------------------------


def where(box: list[int] | None, width: int, height: int) -> str:
    """A place for a box, to be followed by "of the image": "upper left", "upper part",
    "right side", "centre" ..."""
    if not box or width <= 0 or height <= 0:
        return ""
    cx, cy = (box[0] + box[2] / 2) / width, (box[1] + box[3] / 2) / height
    vertical = "upper" if cy < 1 / 3 else "lower" if cy > 2 / 3 else ""
    horizontal = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    if vertical and horizontal:
        return f"{vertical} {horizontal}"
    if vertical:
        return f"{vertical} part"
    if horizontal:
        return f"{horizontal} side"
    return "centre"


def _describe_evidence(e: Evidence, obs: Observations) -> str:
    source, _, name = (e.signal or "").partition(":")
    if source == "text":
        what = {"any": "visible text", "keywords": "keyword", "patterns": "text pattern"}.get(
            name, name.replace("_", " ")
        )
        detail = f'{what} "{e.text}"' if e.text else what
        if e.found_in == "qr:any":
            detail += " in a QR code or barcode"
    elif source == "qr":
        what = "QR code or barcode" if name == "any" else "web address in a QR code or barcode"
        detail = f'{what} "{e.text}"' if e.text else what
    elif source == "face":
        detail = "frontal face" if name == "any" else "face of apparent age under 18"
    else:
        detail = f"{source} {name.replace('_', ' ').lower()}"
    parts = [f"score {e.score:.2f}"] if e.score is not None else []
    place = where(e.box, obs.width, obs.height)
    if place:
        parts.append(f"{place} of the image")
    if e.frame is not None and e.frame > 0:
        parts.append(f"frame {e.frame}")
    return f"{detail} ({', '.join(parts)})" if parts else detail


def explain(
    rule: Rule, verdict: Verdict, assessments: list[CriterionAssessment], obs: Observations
) -> str:
    name = f"rule {rule.id} ({rule.text.rstrip('.')})"
    if verdict is Verdict.violates:
        found = []
        for a in assessments:
            if a.holds:
                details = "; ".join(_describe_evidence(e, obs) for e in a.evidence)
                found.append(f"{a.criterion.description.rstrip('.')}: {details}")
        text = f"Violates {name}. Found: " + " | ".join(found) + "."
        if rule.exceptions:
            text += " Exceptions not checked by the local engine: " + "; ".join(rule.exceptions) + "."
        return text
    checked: list[tuple[str, bool]] = []
    for a in assessments:
        if a.assessed and a.strongest is not None:
            ref, score = a.strongest
            checked.append((f"{a.criterion.id} ({ref.key} {score:.2f}, needs {ref.condition})", a.holds))
    missing = [a.criterion for a in assessments if not a.assessed]
    if verdict is Verdict.complies:
        return f"Complies with {name}: no criterion holds; checked " + ", ".join(c for c, _ in checked) + "."
    text = f"Uncertain for {name}: the local engine has no detector for " + "; ".join(
        f"{c.id} ({c.description.rstrip('.')})" for c in missing
    )
    found = [c for c, holds in checked if holds]  # match: all, and every assessed criterion holds
    if found:
        text += ". Checked and found: " + ", ".join(found)
    if len(found) < len(checked):
        text += ". Checked and not found: " + ", ".join(c for c, holds in checked if not holds)
    return text + "."
