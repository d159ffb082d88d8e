"""Creating a check job (JSON or CSV), the feature's one write of a whole list: the request read
by the domain's rules (`job_input`, `job_csv`) with the one number rule of `POST /v1/checks`,
the dedupe plan and the answers `max_age_s` reuses (`job_plan`, `freshness`), and in the
caller's transaction the job, its items and rejections and a scheduled submit (number sealed)
per item to submit. An Idempotency-Key is matched by a keyed fingerprint of the request.

Every surface calls `create_job`: the REST route (service/api/check_jobs.py) and the portal's
upload; the job it answers is service.features.check_jobs's `JobView`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.domain.intake import FieldError
from service.domain.job_csv import job_from_csv
from service.domain.job_input import JobRefused, JobRequest, job_from_json
from service.domain.job_lifecycle import initial_status
from service.domain.job_plan import plan_dedupe, planned_counts
from service.domain.jsontext import RepeatedKey, compact_json, parse_request_json
from service.domain.phone_numbers import (
    NumberRefusal,
    digest_of_digits,
    parse_phone_number,
)
from service.domain.public_ids import JOB_PREFIX, new_public_id
from service.domain.states import JobItemState, JobState, ScheduledSubmitState
from service.features.check_jobs import JobPace, JobView, job_view
from service.features.errors import BodyTooLarge, BrokenRule, InvalidInput
from service.number_digests import number_digest_keys
from service.sealed_numbers import NumberSeal, job_item_binding, number_seal_for
from service.store import check_job_creation as creation_store
from service.store import check_jobs as job_store
from service.store import freshness
from service.store.check_job_creation import ItemColumns, NewJob, RejectionColumns, SubmitColumns
from service.store.check_jobs import JobRow


class JobMedia(StrEnum):
    JSON = "json"
    CSV = "csv"


@dataclass(frozen=True, slots=True)
class JobSecrets:
    """The deployment's keys a job needs: the numbers' keyed digest under every listed secret,
    the current first (what is kept uses it; what was kept before a rotation matches any), and
    their seal at rest."""

    number_keys: tuple[bytes, ...]
    seal: NumberSeal

    @classmethod
    def of(cls, settings: Settings) -> JobSecrets:
        return cls(number_digest_keys(settings), number_seal_for(settings))


@dataclass(frozen=True, slots=True)
class CreatedJob:
    view: JobView
    # False: the Idempotency-Key named a job this client created before with the same body.
    created: bool


async def create_job(
    session: AsyncSession,
    client_id: int,
    *,
    media: JobMedia,
    body: bytes,
    query: Sequence[tuple[str, str]],
    idempotency_key: str | None,
    settings: Settings,
    secrets: JobSecrets,
    pace: JobPace,
    now: datetime,
) -> CreatedJob:
    """Create a job from a JSON or CSV body, all of it in the caller's transaction: the job, its
    items and rejections, and a scheduled submit (number sealed) per item to submit. The same
    Idempotency-Key with the same body answers that job as it is now and creates nothing; with
    another body, InvalidInput. A request that cannot make a job raises InvalidInput or
    BodyTooLarge and writes nothing."""
    fingerprints = [_fingerprint(key, media, query, body) for key in secrets.number_keys]
    if idempotency_key is not None:
        earlier = await job_store.find_job_by_key(session, client_id, idempotency_key)
        if earlier is not None:
            return CreatedJob(await _replayed(session, earlier, fingerprints, pace, now), False)
    masks: dict[str, str] = {}
    request = _read_request(media, body, query, settings.check_countries, masks)
    del body
    key, *previous_keys = secrets.number_keys
    plan = plan_dedupe(request.items, lambda digits: digest_of_digits(key, digits))
    digits_of = {item.line: item.phone_number for item in request.items} if previous_keys else {}
    cached_from = await freshness.recent_answers(
        session,
        client_id,
        [
            (item.digest, *(digest_of_digits(k, digits_of[item.line]) for k in previous_keys))
            for item in plan.first_occurrences()
        ],
        max_age_s=request.options.max_age_s,
        now=now,
    )
    counts = planned_counts(request, plan, cached=len(cached_from))
    status = initial_status(start=request.options.start)
    recheck = request.options.recheck
    job = await creation_store.insert_job(
        session,
        NewJob(
            public_id=new_public_id(JOB_PREFIX),
            client_id=client_id,
            name=request.options.name,
            status=status,
            max_age_s=request.options.max_age_s,
            recheck_json=None if recheck is None else compact_json(recheck.as_json()),
            idempotency_key=idempotency_key,
            fingerprint=fingerprints[0] if idempotency_key is not None else None,
            counts=counts,
            now=now,
        ),
    )
    if job is None:
        # Another request with this key created it meanwhile.
        assert idempotency_key is not None
        earlier = await job_store.find_job_by_key(session, client_id, idempotency_key)
        assert earlier is not None
        return CreatedJob(await _replayed(session, earlier, fingerprints, pace, now), False)
    items = ItemColumns()
    submits = SubmitColumns()
    for item, planned in zip(request.items, plan.items, strict=True):
        cached_task = cached_from.get(planned.digest) if not planned.is_duplicate else None
        if planned.is_duplicate:
            state = JobItemState.DUPLICATE
        elif cached_task is not None:
            state = JobItemState.CACHED
        else:
            state = JobItemState.WAITING
            submits.lines.append(item.line)
            submits.sealed.append(
                secrets.seal.seal(
                    item.phone_number, job_item_binding(client_id, job.public_id, item.line)
                )
            )
        items.add(
            item.line,
            state,
            item.reference,
            None if item.metadata_json == "{}" else item.metadata_json,
            masks[item.phone_number],
            planned.digest,
            planned.first_line,
            cached_task,
        )
    await creation_store.insert_items(session, job.id, items)
    await creation_store.refresh_item_statistics(session, len(items.lines))
    del items
    rejections = RejectionColumns()
    for rejection in request.rejections:
        rejections.lines.append(rejection.line)
        rejections.references.append(rejection.reference)
        rejections.details.append(rejection.detail)
    await creation_store.insert_rejections(session, job.id, rejections)
    submit_state = (
        ScheduledSubmitState.STANDBY
        if status.state is JobState.DRAFT
        else ScheduledSubmitState.WAITING
    )
    await creation_store.insert_item_submits(session, job, submits, state=submit_state, now=now)
    return CreatedJob(await job_view(session, job, pace, now), True)


def _read_request(
    media: JobMedia,
    body: bytes,
    query: Sequence[tuple[str, str]],
    countries: Sequence[str],
    masks: dict[str, str],
) -> JobRequest:
    def read_number(text: str) -> str | FieldError:
        number = parse_phone_number(text, countries)
        if isinstance(number, NumberRefusal):
            return FieldError("phone_number", number.message)
        masks[number.digits] = number.masked
        return number.digits

    if media is JobMedia.CSV:
        read = job_from_csv(body, query, read_number)
    else:
        read = job_from_json(_parsed_json(body), read_number)
    if isinstance(read, JobRefused):
        # Every broken rule names where it is: a rule of the whole list names the items (JSON)
        # or the body (CSV); its message says which line.
        whole = "items" if media is JobMedia.JSON else "body"
        broken = [BrokenRule(error.field or whole, error.message) for error in read.errors]
        if read.status == 413:
            raise BodyTooLarge(read.detail, broken)
        raise InvalidInput(read.detail, broken)
    return read


def _parsed_json(body: bytes) -> object:
    if not body.strip():
        raise InvalidInput('the request body is empty; a JSON object {"items": [...]} is expected')
    try:
        return parse_request_json(body)
    except orjson.JSONDecodeError as error:
        raise InvalidInput(f"the request body is not valid JSON: {error}") from None
    except RepeatedKey as repeated:
        raise InvalidInput(
            f"the request body names the key {repeated.key[:64]!r} twice in one object"
        ) from None


def _fingerprint(
    number_key: bytes, media: JobMedia, query: Sequence[tuple[str, str]], body: bytes
) -> bytes:
    """What tells two requests apart for an Idempotency-Key, keyed like a number's digest so
    that nothing a guess could be checked against is kept."""
    mac = hmac.new(number_key, media.value.encode(), hashlib.sha256)
    if media is JobMedia.CSV:
        mac.update(b"\n" + orjson.dumps(sorted(query)))
    mac.update(b"\n" + body)
    return mac.digest()


async def _replayed(
    session: AsyncSession,
    earlier: JobRow,
    fingerprints: Sequence[bytes],
    pace: JobPace,
    now: datetime,
) -> JobView:
    """The earlier job when its body's fingerprint is this one's under any listed key."""
    kept = earlier.fingerprint
    if kept is None or not any(hmac.compare_digest(kept, f) for f in fingerprints):
        raise InvalidInput(
            "this Idempotency-Key was used for another job with another body; use a new key "
            "for a new job",
            [BrokenRule("header.Idempotency-Key", "used before with another body")],
        )
    return await job_view(session, earlier, pace, now)
