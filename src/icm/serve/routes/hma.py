"""HMA-compatible endpoints: the hashing (``/h``), matching (``/m``) and curation (``/c``) API of
Meta's Hasher-Matcher-Actioner, over icm's banks, so HMA clients work against ``icm serve``.

Shapes follow HMA's: ``/h/hash`` answers ``{"pdq": HEX}``; ``/m/lookup`` with ``signal_type`` and
``signal`` answers ``{BANK: [{"bank_content_id", "distance"}]}`` (the distance a string, as HMA
writes it), and with an upload or a ``url`` the same keyed by signal type (``{"pdq": {BANK: ...}}``);
``/c/banks`` lists and creates banks, ``/c/bank/NAME/content`` adds (an upload in the ``photo``
field, or ``url``) and lists content, ``DELETE /c/bank/NAME/content/ID`` removes it. Where icm
differs: content ids are strings (the uploader's ``metadata.content_id``, else the image's sha256),
and a bank has icm's kind and rules (``POST /c/banks`` takes ``kind`` and ``rules``; without
rules the bank is looked up but decides no rule). Keys: ``review`` looks up and reads, ``admin``
changes banks; every change is audited.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from icm.banks.hashing import hash_image
from icm.banks.matcher import BankMatcher
from icm.banks.model import BankConfig, BankEntry, BankError, BankKind, SignalType, check_hash
from icm.errors import InputError
from icm.media import MediaError, load_image
from icm.results import Hashes
from icm.serve.auth import Caller, Scope
from icm.serve.inputs import upload_form
from icm.serve.openapi import KEYED, errors
from icm.serve.service import Service, authorized, service_of
from icm.serve.store.banks import SqlBanks
from icm.serve.store.reviews import ReviewStore
from icm.validation import describe_validation_error

router = APIRouter(tags=["hma-compatible"])

#: every route: a bad input (400), a key without the scope (403), no such bank (404), and what
#: every keyed route answers
_ANSWERS = (400, 403, 404, *KEYED)
_LOOKUP = errors(*_ANSWERS, 413)


class BankCreate(BaseModel):
    """``POST /c/banks``: HMA's fields (name, enabled_ratio, enabled) and icm's (kind, rules ...)."""

    name: str
    enabled_ratio: float | None = Field(1.0, description="HMA's field; icm matches every bank fully")
    enabled: bool | None = None
    kind: BankKind = BankKind.deny
    rules: list[str] = Field(default_factory=list, description="deny: the rule; allow: the rules it clears")
    signal: SignalType = SignalType.pdq
    distance: int | None = None
    quality_floor: int | None = None
    dihedral: bool = False
    dsa_category: str | None = None
    description: str = ""


def banks_of(service: Service) -> SqlBanks:
    return SqlBanks(service.store)


def matcher_of(service: Service) -> BankMatcher:
    """The service's one matcher (the one its Moderator matches with)."""
    matcher: BankMatcher = service.judging.banks
    return matcher


def _bank_json(config: BankConfig, entries: int | None = None) -> dict[str, Any]:
    body = {"name": config.name, "matching_enabled_ratio": 1.0, **config.model_dump(mode="json", exclude={"name"})}
    if entries is not None:
        body["entries"] = entries
    return body


def _audit(service: Service, caller: Caller, action: str, target: str, after: dict[str, Any] | None = None,
           before: dict[str, Any] | None = None) -> None:
    ReviewStore(service.store).audit(f"key:{caller.key_id}", action, target, before=before, after=after)


async def _photo(request: Request, service: Service) -> tuple[bytes, str, dict[str, Any], str | None]:
    """The uploaded ``photo`` (HMA's field name), its name, and the form's metadata and note."""
    form, upload = await upload_form(request, "photo", max_part_bytes=service.settings.max_body_bytes,
                                     max_fields=20, what=" (HMA's content type)")
    metadata: dict[str, Any] = {}
    raw = form.get("metadata")
    if isinstance(raw, str) and raw:
        try:
            metadata = json.loads(raw)
        except ValueError:
            raise InputError("metadata form field must be valid JSON") from None
        if not isinstance(metadata, dict):
            raise InputError("metadata should be a json object")
    note = form.get("note")
    return await upload.read(), upload.filename or "upload", metadata, note if isinstance(note, str) else None


async def _image(request: Request, service: Service, url: str | None) -> tuple[bytes, str, dict[str, Any], str | None]:
    if url:
        data, name = await service.image(url)
        return data, name, {}, None
    if request.headers.get("content-type", "").split(";")[0].strip() != "multipart/form-data":
        raise InputError("send the image as multipart/form-data in a field named 'photo', or give ?url=")
    return await _photo(request, service)


def _hashes(service: Service, data: bytes, name: str) -> tuple[Hashes, str]:
    """The image's hashes (the dihedral copies too when a bank wants them) and sha256."""
    try:
        image = load_image(name, data=data, limits=service.judging.limits)
    except MediaError as exc:
        raise InputError(f"{exc.code}: {exc.message}") from None
    return hash_image(image, dihedral=matcher_of(service).dihedral), image.sha256


def _found(matches: dict[str, list[Any]]) -> dict[str, list[dict[str, Any]]]:
    return {bank: [{"bank_content_id": f.entry.content_id, "distance": str(f.distance)} for f in found]
            for bank, found in matches.items()}


# -- hashing -----------------------------------------------------------------------------------


@router.get("/h/hash", summary="HMA: the PDQ of the image at a URL", responses=_LOOKUP)
async def hash_url(request: Request, url: str = Query(..., description="the image (subject to the URL rules)"),
                   caller: Caller = Depends(authorized(Scope.review))) -> dict[str, str]:
    service = service_of(request)
    data, name = await service.image(url)
    hashes, _ = await run_in_threadpool(_hashes, service, data, name)
    return {"pdq": hashes.pdq[0]}


@router.post("/h/hash", summary="HMA: the PDQ of an uploaded image (multipart field photo)", responses=_LOOKUP)
async def hash_upload(request: Request, caller: Caller = Depends(authorized(Scope.review))) -> dict[str, str]:
    service = service_of(request)
    data, name, _, _ = await _photo(request, service)
    hashes, _ = await run_in_threadpool(_hashes, service, data, name)
    return {"pdq": hashes.pdq[0]}


# -- matching ----------------------------------------------------------------------------------


def _banks_param(banks: str | None) -> list[str] | None:
    return [b.strip() for b in banks.split(",") if b.strip()] if banks else None


async def _lookup_image(service: Service, data: bytes, name: str, banks: list[str] | None,
                        ) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every bank match of an image, keyed by signal type then bank, each frame's PDQ below a
    bank's quality floor left out as the Moderator leaves it out."""
    hashes, sha256 = await run_in_threadpool(_hashes, service, data, name)
    matcher = matcher_of(service)
    matches = await run_in_threadpool(matcher.match, hashes, sha256)
    signals = {config.name: config.signal.value for config in matcher.configs()}
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for match in matches:
        if banks is not None and match.bank not in banks:
            continue
        out.setdefault(signals[match.bank], {}).setdefault(match.bank, []).append(
            {"bank_content_id": match.content_id, "distance": str(match.distance)})
    return out


@router.get("/m/lookup", summary="HMA: banks holding a hash (signal_type, signal) or the image at a URL",
            responses=_LOOKUP)
async def lookup_get(
    request: Request,
    signal_type: str | None = Query(None, description="pdq, md5 or sha256"),
    signal: str | None = Query(None, description="the hash"),
    url: str | None = Query(None, description="an image to hash and look up (subject to the URL rules)"),
    banks: str | None = Query(None, description="comma-separated: only these banks"),
    caller: Caller = Depends(authorized(Scope.review)),
) -> dict[str, Any]:
    service = service_of(request)
    wanted = _banks_param(banks)
    if url:
        data, name = await service.image(url)
        by_signal = await _lookup_image(service, data, name, wanted)
        return by_signal.get(signal_type, {}) if signal_type else by_signal
    if not signal or not signal_type:
        raise InputError("Either url or both signal and signal_type are required")
    try:
        kind = SignalType(signal_type)
        value = check_hash(kind, signal)
    except ValueError as exc:
        raise InputError(f"invalid signal: {exc}") from None
    found = await run_in_threadpool(matcher_of(service).lookup, kind, [value], wanted)
    return _found(found)


@router.post("/m/lookup", summary="HMA: banks holding an uploaded image (multipart field photo)",
             responses=_LOOKUP)
async def lookup_post(request: Request, banks: str | None = Query(None),
                      caller: Caller = Depends(authorized(Scope.review))) -> dict[str, Any]:
    service = service_of(request)
    data, name, _, _ = await _photo(request, service)
    return await _lookup_image(service, data, name, _banks_param(banks))


# -- curation ----------------------------------------------------------------------------------


@router.get("/c/banks", summary="HMA: the banks", responses=errors(*_ANSWERS))
async def list_banks(request: Request, caller: Caller = Depends(authorized(Scope.review))) -> list[dict[str, Any]]:
    store = banks_of(service_of(request))

    def rows() -> list[dict[str, Any]]:
        out = []
        for name in store.names():
            bank = store.get(name)
            out.append(_bank_json(bank.config, bank.count()[0]))
        return out

    return await run_in_threadpool(rows)


@router.get("/c/bank/{bank_name}", summary="HMA: one bank", responses=errors(*_ANSWERS))
async def get_bank(bank_name: str, request: Request,
                   caller: Caller = Depends(authorized(Scope.review))) -> dict[str, Any]:
    bank = await run_in_threadpool(banks_of(service_of(request)).get, bank_name)
    return _bank_json(bank.config, (await run_in_threadpool(bank.count))[0])


@router.post("/c/banks", status_code=201, summary="HMA: create a bank",
             responses=errors(*_ANSWERS, 409, 413))
async def create_bank(body: BankCreate, request: Request,
                      caller: Caller = Depends(authorized(Scope.admin))) -> dict[str, Any]:
    service = service_of(request)
    fields = body.model_dump(exclude={"enabled_ratio", "enabled"}, exclude_none=True)
    fields["created_by"] = f"key:{caller.key_id}"
    try:
        config = BankConfig.model_validate(fields)
    except ValidationError as exc:
        raise BankError(f"bank {body.name}: {describe_validation_error(exc, root='bank')}") from None
    await run_in_threadpool(banks_of(service).create, config)
    await run_in_threadpool(_audit, service, caller, "bank.create", config.name, config.model_dump(mode="json"))
    matcher_of(service).refresh(force=True)
    return _bank_json(config, 0)


def _entry_json(entry: BankEntry) -> dict[str, Any]:
    return {"id": entry.content_id, "signals": {"hash": entry.hash}, **entry.model_dump(
        mode="json", exclude={"content_id", "hash"}, exclude_none=True)}


@router.get("/c/bank/{bank_name}/content", summary="A bank's content", responses=errors(*_ANSWERS))
async def list_content(bank_name: str, request: Request,
                       caller: Caller = Depends(authorized(Scope.review))) -> list[dict[str, Any]]:
    bank = await run_in_threadpool(banks_of(service_of(request)).get, bank_name)
    entries = await run_in_threadpool(bank.entries)
    signal = bank.config.signal.value
    return [{**_entry_json(e), "signals": {signal: e.hash}} for e in entries]


@router.get("/c/bank/{bank_name}/content/{content_id}", summary="HMA: one content of a bank",
            responses=errors(*_ANSWERS))
async def get_content(bank_name: str, content_id: str, request: Request,
                      caller: Caller = Depends(authorized(Scope.review))) -> dict[str, Any]:
    bank = await run_in_threadpool(banks_of(service_of(request)).get, bank_name)
    entries = [e for e in await run_in_threadpool(bank.entries) if e.content_id == content_id]
    if not entries:
        from icm.serve.errors import NotFound

        raise NotFound(f"content '{content_id}' not found")
    return {"id": content_id, "bank": _bank_json(bank.config),
            "signals": {bank.config.signal.value: entries[0].hash},
            "metadata": {"content_id": content_id, "labels": entries[0].labels},
            "added_by": entries[0].added_by, "added_at": entries[0].added_at.isoformat()}


@router.post("/c/bank/{bank_name}/content", summary="HMA: add an image to a bank (photo upload or ?url=)",
             responses=errors(*_ANSWERS, 413))
async def add_content(bank_name: str, request: Request, url: str | None = Query(None),
                      caller: Caller = Depends(authorized(Scope.admin))) -> dict[str, Any]:
    service = service_of(request)
    bank = await run_in_threadpool(banks_of(service).get, bank_name)
    data, name, metadata, note = await _image(request, service, url)
    hashes, sha256 = await run_in_threadpool(_hashes, service, data, name)
    content_id = str(metadata.get("content_id") or sha256)
    labels = [str(x) for x in metadata.get("labels", [])] if isinstance(metadata.get("labels"), list) else []
    config = bank.config
    who = f"key:{caller.key_id}"
    if config.signal is SignalType.pdq:
        kept = [(pdq, q) for pdq, q in dict(zip(hashes.pdq, hashes.quality, strict=True)).items()
                if q >= config.quality_floor]
        if not kept:
            raise BankError(f"PDQ quality {max(hashes.quality)} is below bank {config.name}'s floor "
                            f"{config.quality_floor} (a flat or blank image): it would never match")
        entries = [BankEntry(content_id=content_id, hash=pdq, quality=q, labels=labels, added_by=who,
                             source=url or note or name) for pdq, q in kept]
    else:
        value = hashes.md5 if config.signal is SignalType.md5 else sha256
        entries = [BankEntry(content_id=content_id, hash=value or "", labels=labels, added_by=who,
                             source=url or note or name)]
    added = await run_in_threadpool(bank.add, entries)
    await run_in_threadpool(_audit, service, caller, "bank.add", config.name,
                            {"content_id": content_id, "hashes": [e.hash for e in added], "note": note})
    matcher_of(service).refresh(force=True)
    return {"id": content_id, "signals": {config.signal.value: added[0].hash}}


class SignalsBody(BaseModel):
    """``POST /c/bank/NAME/signal``: hashes by signal type (HMA), optional content id and note."""

    model_config = {"extra": "allow"}
    content_id: str | None = None
    note: str | None = None


@router.post("/c/bank/{bank_name}/signal", summary="HMA: add a hash to a bank",
             responses=errors(*_ANSWERS, 413))
async def add_signal(bank_name: str, body: SignalsBody, request: Request,
                     caller: Caller = Depends(authorized(Scope.admin))) -> dict[str, Any]:
    service = service_of(request)
    bank = await run_in_threadpool(banks_of(service).get, bank_name)
    signal = bank.config.signal.value
    values = body.model_extra or {}
    if signal not in values or not isinstance(values[signal], str):
        raise InputError(f"bank {bank_name} holds {signal} hashes: send {{\"{signal}\": HASH}}")
    try:
        value = check_hash(bank.config.signal, values[signal])
    except ValueError as exc:
        raise InputError(f"Invalid {signal} signal: {exc}") from None
    content_id = body.content_id or value
    added = await run_in_threadpool(bank.add, [BankEntry(content_id=content_id, hash=value,
                                                         added_by=f"key:{caller.key_id}", source=body.note)])
    await run_in_threadpool(_audit, service, caller, "bank.add", bank_name,
                            {"content_id": content_id, "hashes": [value], "note": body.note})
    matcher_of(service).refresh(force=True)
    return {"id": content_id, "signals": {signal: added[0].hash}}


@router.delete("/c/bank/{bank_name}/content/{content_id}", summary="HMA: remove content from a bank",
               responses=errors(*_ANSWERS))
async def remove_content(bank_name: str, content_id: str, request: Request,
                         caller: Caller = Depends(authorized(Scope.admin))) -> dict[str, int]:
    service = service_of(request)
    bank = await run_in_threadpool(banks_of(service).get, bank_name)
    removed = await run_in_threadpool(bank.remove, content_id)
    if removed:
        await run_in_threadpool(_audit, service, caller, "bank.remove", bank_name, None,
                                {"content_id": content_id, "entries": removed})
        matcher_of(service).refresh(force=True)
    return {"deleted": removed}
