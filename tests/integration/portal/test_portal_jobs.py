"""Check jobs in the portal: the upload (multipart, behind the session's CSRF token, within the
16 MiB limit while it streams), a draft's estimate, the moves and their 409s shown on the job's
page, a page that refreshes itself while the job moves, the rejections, the results CSV (the
API's own), and isolation between clients. Everything through the real app and database."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.api.portal.job_pages import BODY_LIMITS, REFRESH_S, UPLOAD_PATH
from service.api.portal.session import CONTENT_SECURITY_POLICY
from service.domain.job_input import JOB_BODY_MAX_BYTES
from service.store.db import transaction
from tests.support.api import bearer
from tests.support.factories import new_key
from tests.support.jobs import csv_body, get_job, job_move, mx_number
from tests.support.jobs_store import keep_count_then_change_it
from tests.support.portal import csrf_of, page_csrf

JOB_PAGE = re.compile(r"/portal/jobs/(job_[A-Za-z0-9]+)\?notice=(job-[a-z]+)")
REFRESH = re.compile(r'<meta http-equiv="refresh" content="(\d+); url=/portal/jobs/job_\w+">')


async def upload(
    person: httpx.AsyncClient,
    body: bytes,
    *,
    csrf: str | None = None,
    filename: str = "book.csv",
    **fields: str,
) -> httpx.Response:
    """Post the upload form as a browser does: multipart, with the list page's CSRF token."""
    token = csrf if csrf is not None else await page_csrf(person, UPLOAD_PATH)
    data = {"csrf": token, "start": "false", **fields}
    return await person.post(UPLOAD_PATH, data=data, files={"file": (filename, body, "text/csv")})


def job_id_of(response: httpx.Response, notice: str) -> str:
    assert response.status_code == 303, response.text
    match = JOB_PAGE.fullmatch(response.headers["location"])
    assert match is not None, response.headers["location"]
    assert match.group(2) == notice
    return match.group(1)


async def job_count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with transaction(sessions) as session:
        return int((await session.execute(text("SELECT count(*) FROM check_jobs"))).scalar_one())


async def post_move(person: httpx.AsyncClient, job_id: str, move: str) -> httpx.Response:
    csrf = await page_csrf(person, f"/portal/jobs/{job_id}")
    return await person.post(f"/portal/jobs/{job_id}/{move}", data={"csrf": csrf})


def alert(html: str) -> str:
    match = re.search(r'<(p|div) class="error" role="alert">(.*?)</\1>', html, re.S)
    assert match is not None, "the page shows no refusal"
    return re.sub(r"<[^>]+>", " ", match.group(2))


ROWS = [(mx_number(1), "a"), ("not a number", "b"), (mx_number(2), "c"), (mx_number(1), "a2")]


@pytest.fixture
async def other_key(portal_app: FastAPI) -> str:
    return await new_key(portal_app.state.settings)


@pytest.fixture
async def draft_id(person: httpx.AsyncClient) -> str:
    return job_id_of(await upload(person, csv_body(ROWS), name="november book"), "job-drafted")


async def test_the_nav_leads_to_the_jobs_page_with_its_upload_form(
    person: httpx.AsyncClient,
) -> None:
    overview = await person.get("/portal")
    assert '<a href="/portal/jobs"' in overview.text
    page = await person.get(UPLOAD_PATH)
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in page.text
    assert "No jobs." in page.text


async def test_an_uploaded_draft_shows_its_estimate_and_does_not_refresh(
    person: httpx.AsyncClient, draft_id: str
) -> None:
    page = await person.get(f"/portal/jobs/{draft_id}?notice=job-drafted")
    assert page.status_code == 200
    html = page.text
    assert "Draft saved" in html
    assert "november book" in html
    # 4 rows: one rejected, one duplicate, so 2 checks to pay for.
    assert '<span class="n to-submit">2</span> checks will be submitted' in html
    assert '<dd class="count-rejected">1</dd>' in html
    assert '<dd class="count-duplicates">1</dd>' in html
    assert REFRESH.search(html) is None
    assert 'class="move-start"' in html
    assert 'class="move-cancel"' in html
    assert 'class="move-pause"' not in html
    assert 'class="move-resume"' not in html
    # The first page of rejections, by line.
    assert "<td>2</td><td>b</td>" in html


async def test_the_job_made_is_the_apis_own(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str, draft_id: str
) -> None:
    job = await get_job(api, key, draft_id)
    assert (job["name"], job["state"], job["max_age_s"]) == ("november book", "draft", 0)
    assert job["counts"]["to_submit"] == 2


async def test_starting_queues_the_job_and_its_page_refreshes_itself(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str, draft_id: str
) -> None:
    started = await post_move(person, draft_id, "start")
    assert started.status_code == 303
    assert started.headers["location"] == f"/portal/jobs/{draft_id}?notice=job-start"
    assert (await get_job(api, key, draft_id))["state"] == "queued"
    page = await person.get(started.headers["location"])
    match = REFRESH.search(page.text)
    assert match is not None
    assert int(match.group(1)) == REFRESH_S
    # A <meta> refresh is navigation, which the policy (no script at all) leaves alone.
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'none'" in CONTENT_SECURITY_POLICY
    assert '<progress class="job-progress"' in page.text
    assert 'class="move-pause"' in page.text
    assert 'class="move-start"' not in page.text


async def test_pause_resume_and_cancel_move_the_job_and_a_paused_one_stops_refreshing(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str, draft_id: str
) -> None:
    assert (await post_move(person, draft_id, "start")).status_code == 303
    paused = await post_move(person, draft_id, "pause")
    assert paused.headers["location"].endswith("notice=job-pause")
    job = await get_job(api, key, draft_id)
    assert (job["state"], job["paused_reason"]) == ("paused", "client")
    page = await person.get(f"/portal/jobs/{draft_id}")
    assert REFRESH.search(page.text) is None
    assert 'class="move-resume"' in page.text
    assert (await post_move(person, draft_id, "resume")).status_code == 303
    assert (await get_job(api, key, draft_id))["state"] == "running"
    cancelled = await post_move(person, draft_id, "cancel")
    assert cancelled.headers["location"].endswith("notice=job-cancel")
    assert (await get_job(api, key, draft_id))["state"] == "cancelled"
    page = await person.get(f"/portal/jobs/{draft_id}")
    assert 'class="job-moves"' not in page.text


async def test_a_move_the_state_refuses_is_a_409_message_on_the_jobs_page(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str, draft_id: str
) -> None:
    # The page was loaded while the job was a draft; meanwhile the API cancelled it.
    csrf = await page_csrf(person, f"/portal/jobs/{draft_id}")
    assert (await job_move(api, key, draft_id, "cancel")).status_code == 200
    refused = await person.post(f"/portal/jobs/{draft_id}/start", data={"csrf": csrf})
    assert refused.status_code == 409
    assert "cannot start the job: the job is cancelled" in alert(refused.text)
    assert "<h1>409</h1>" not in refused.text
    assert "Download results CSV" in refused.text


async def test_a_move_without_the_csrf_token_is_refused_and_changes_nothing(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str, draft_id: str
) -> None:
    refused = await person.post(f"/portal/jobs/{draft_id}/start", data={"csrf": "forged"})
    assert refused.status_code == 403
    assert (await get_job(api, key, draft_id))["state"] == "draft"


async def test_an_unknown_move_is_404(person: httpx.AsyncClient, draft_id: str) -> None:
    csrf = await page_csrf(person, f"/portal/jobs/{draft_id}")
    for move in ("begin", "all_final", "delete"):
        response = await person.post(f"/portal/jobs/{draft_id}/{move}", data={"csrf": csrf})
        assert response.status_code == 404


async def test_start_now_queues_the_job_at_once(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str
) -> None:
    response = await upload(person, csv_body([(mx_number(7), "x")]), start="true", max_age_s="60")
    job_id = job_id_of(response, "job-created")
    job = await get_job(api, key, job_id)
    assert (job["state"], job["max_age_s"], job["name"]) == ("queued", 60, None)


async def test_the_list_shows_jobs_newest_first_filtered_by_state(
    person: httpx.AsyncClient, draft_id: str
) -> None:
    started = job_id_of(
        await upload(person, csv_body([(mx_number(9), "z")]), name="second", start="true"),
        "job-created",
    )
    listed = (await person.get(UPLOAD_PATH)).text
    assert listed.index(started) < listed.index(draft_id)
    assert listed.count('<progress class="job-progress"') == 2
    drafts = (await person.get(f"{UPLOAD_PATH}?state=draft")).text
    assert draft_id in drafts
    assert started not in drafts
    assert (
        "No jobs in state completed." in (await person.get(f"{UPLOAD_PATH}?state=completed")).text
    )


@pytest.mark.parametrize(
    ("body", "fields", "words"),
    [
        (b"number,reference\r\n+52 55 0000 0001,a\r\n", {}, "no phone_number column"),
        (csv_body([("12", "a"), ("also not", "b")]), {}, "line 2: "),
        (b"phone_number\r\n", {}, "no items"),
        (b"phone_number\r\n\xff\xfe\r\n", {}, "UTF-8"),
        (csv_body([(mx_number(1), "a")]), {"max_age_s": "-5"}, "max_age_s: "),
        (csv_body([(mx_number(1), "a")]), {"start": "maybe"}, "start: must be true or false"),
        (b"", {}, "Choose a CSV file"),
    ],
    ids=["no-phone-column", "none-valid", "no-items", "not-utf8", "max-age", "start", "empty"],
)
async def test_a_refused_upload_names_the_line_or_field_and_creates_nothing(
    person: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    body: bytes,
    fields: dict[str, str],
    words: str,
) -> None:
    before = await job_count(sessions)
    response = await upload(person, body, name="kept", **fields)
    assert response.status_code == 422, response.text
    assert words in alert(response.text)
    assert "nothing was created" in response.text
    # The form keeps what was typed.
    assert 'value="kept"' in response.text
    assert await job_count(sessions) == before


async def test_a_file_over_16_mib_is_refused_while_it_streams_with_a_page(
    person: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    before = await job_count(sessions)
    csrf = await page_csrf(person, UPLOAD_PATH)
    large = b"phone_number\n" + b"5" * (JOB_BODY_MAX_BYTES - len(b"phone_number\n") + 1)
    # Within the form's allowance: the feature's own 16 MiB rule refuses the file.
    response = await upload(person, large, csrf=csrf)
    assert response.status_code == 413
    assert "at most 16777216 bytes (16 MiB)" in alert(response.text)
    # Past the whole form's limit, declared: refused at its first read, none of it read.
    huge = large + b"5" * (BODY_LIMITS[UPLOAD_PATH] - JOB_BODY_MAX_BYTES)
    response = await upload(person, huge, csrf=csrf)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert "Split it into several jobs" in alert(response.text)

    # Streamed without a declared length: cut off as it passes the limit, the same page.
    boundary = "pbboundary"

    async def chunks() -> AsyncIterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        for start in range(0, len(huge), 1 << 20):
            yield huge[start : start + (1 << 20)]
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await person.post(
        UPLOAD_PATH,
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413
    assert "Split it into several jobs" in alert(response.text)
    assert await job_count(sessions) == before


async def test_an_upload_without_the_csrf_token_is_refused(
    person: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    before = await job_count(sessions)
    response = await upload(person, csv_body([(mx_number(1), "a")]), csrf="forged")
    assert response.status_code == 403
    # An urlencoded post is no upload.
    response = await person.post(UPLOAD_PATH, data={"csrf": await page_csrf(person, UPLOAD_PATH)})
    assert response.status_code == 415
    assert await job_count(sessions) == before


async def test_the_same_form_posted_twice_makes_one_job(
    person: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    form = (await person.get(UPLOAD_PATH)).text
    key_field = re.search(r'name="idempotency_key" value="([^"]+)"', form)
    assert key_field is not None
    fields = {"idempotency_key": key_field.group(1)}
    body = csv_body([(mx_number(3), "a")])
    first = job_id_of(await upload(person, body, csrf=csrf_of(form), **fields), "job-drafted")
    before = await job_count(sessions)
    again = job_id_of(await upload(person, body, csrf=csrf_of(form), **fields), "job-drafted")
    assert again == first
    assert await job_count(sessions) == before


async def test_the_results_csv_is_the_apis_csv_as_a_download(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str, draft_id: str
) -> None:
    downloaded = await person.get(f"/portal/jobs/{draft_id}/results.csv")
    assert downloaded.status_code == 200
    assert downloaded.headers["content-type"] == "text/csv; charset=utf-8"
    assert downloaded.headers["content-disposition"] == (
        f'attachment; filename="{draft_id}-results.csv"'
    )
    from_api = await api.get(
        f"/v1/check-jobs/{draft_id}/results", headers={**bearer(key), "Accept": "text/csv"}
    )
    assert from_api.status_code == 200
    assert downloaded.content == from_api.content
    rows: list[dict[str, Any]] = list(csv.DictReader(io.StringIO(downloaded.text)))
    assert [(row["line"], row["reference"]) for row in rows] == [
        ("1", "a"),
        ("3", "c"),
        ("4", "a2"),
    ]


async def test_another_clients_job_is_a_404_page_everywhere(
    person: httpx.AsyncClient, api: httpx.AsyncClient, other_key: str
) -> None:
    created = await api.post(
        "/v1/check-jobs",
        json={"items": [{"phone_number": mx_number(5)}], "start": False},
        headers=bearer(other_key),
    )
    assert created.status_code == 201, created.text
    theirs = created.json()["id"]
    csrf = await page_csrf(person, UPLOAD_PATH)
    for response in (
        await person.get(f"/portal/jobs/{theirs}"),
        await person.get(f"/portal/jobs/{theirs}/results.csv"),
        await person.post(f"/portal/jobs/{theirs}/start", data={"csrf": csrf}),
        await person.get("/portal/jobs/job_not-a-job"),
    ):
        assert response.status_code == 404
        assert "no such check job for this client" in response.text
        assert theirs not in response.text


async def test_the_job_page_shows_the_kept_count_while_it_is_young_and_counts_after_a_move(
    person: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    redis_client: Redis[Any],
) -> None:
    # Kept between reads as the REST API keeps it (service/features/job_counts.py).
    response = await upload(person, csv_body([(mx_number(8), "x")]), start="true")
    job_id = job_id_of(response, "job-created")
    kept = await keep_count_then_change_it(sessions, redis_client, job_id)
    page = await person.get(f"/portal/jobs/{job_id}")
    assert f'<dd class="count-submitted">{kept}</dd>' in page.text
    moved = await post_move(person, job_id, "pause")
    page = await person.get(moved.headers["location"])
    assert f'<dd class="count-submitted">{kept + 1}</dd>' in page.text
