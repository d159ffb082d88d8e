"""The portal's security promises, in-process: sign-in and its cookie, sign-out, CSRF, the
Content-Security-Policy, escaping, and one client never seeing another's data."""

from __future__ import annotations

import base64

import httpx
import pytest
from fastapi import FastAPI

from service.api.portal.session import CONTENT_SECURITY_POLICY, SIGN_IN_COOKIE
from tests.support.api import bearer
from tests.support.factories import new_key
from tests.support.portal import csrf_of, page_csrf, portal_browser, sign_in


async def test_pages_need_a_session(portal_app: FastAPI) -> None:
    async with portal_browser(portal_app) as anonymous:
        for path in ["/portal", "/portal/tasks", "/portal/subscriptions", "/portal/deliveries"]:
            response = await anonymous.get(path)
            assert response.status_code == 303
            assert response.headers["location"] == "/portal/sign-in"


async def test_sign_in_sets_a_strict_http_only_cookie_with_expiry(
    portal_app: FastAPI, key: str
) -> None:
    async with portal_browser(portal_app) as client:
        response = await sign_in(client, key)
    assert response.status_code == 303
    cookie = next(
        value
        for name, value in response.headers.multi_items()
        if name == "set-cookie" and value.startswith("pb_portal=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    assert "Max-Age=" in cookie
    assert "Path=/portal" in cookie
    # Plain HTTP on loopback: not Secure, or the browser would never send it back.
    assert "Secure" not in cookie


async def test_cookie_is_secure_off_loopback(portal_app: FastAPI, key: str) -> None:
    transport = httpx.ASGITransport(app=portal_app)
    async with httpx.AsyncClient(transport=transport, base_url="https://portal.example") as client:
        response = await sign_in(client, key)
    cookies = [v for n, v in response.headers.multi_items() if n == "set-cookie"]
    assert any(c.startswith("pb_portal=") and "Secure" in c for c in cookies)


def session_cookie(response: httpx.Response) -> str:
    return next(
        value
        for name, value in response.headers.multi_items()
        if name == "set-cookie" and value.startswith("pb_portal=")
    )


@pytest.mark.parametrize(
    ("peer", "headers"),
    [
        # A TLS proxy on this machine with nginx's default proxy_pass: loopback peer and Host.
        ("127.0.0.1", {"x-forwarded-proto": "https"}),
        ("127.0.0.1", {"forwarded": "for=198.51.100.2;proto=https"}),
        ("127.0.0.1", {"origin": "https://portal.example"}),
        # A peer elsewhere that says Host: 127.0.0.1 (issue 29, item 5: the probe's request).
        ("203.0.113.7", {}),
    ],
    ids=["x-forwarded-proto", "forwarded", "browser-origin", "remote-peer"],
)
async def test_a_loopback_host_header_alone_does_not_take_secure_away(
    portal_app: FastAPI, key: str, peer: str, headers: dict[str, str]
) -> None:
    transport = httpx.ASGITransport(app=portal_app, client=(peer, 40000))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1:8000", headers=headers
    ) as client:
        # The browser is on HTTPS and sends the Secure nonce cookie back; this client, on the
        # proxy's side of the TLS, would not, so it is carried by hand.
        form = await client.get("/portal/sign-in")
        nonce = next(
            value.split(";")[0]
            for name, value in form.headers.multi_items()
            if name == "set-cookie" and value.startswith(f"{SIGN_IN_COOKIE}=")
        )
        assert "Secure" in form.headers["set-cookie"]
        client.cookies.clear()
        response = await client.post(
            "/portal/sign-in",
            data={"api_key": key, "csrf": csrf_of(form.text)},
            headers={"cookie": nonce},
        )
    assert response.status_code == 303, response.text
    assert "Secure" in session_cookie(response)


async def test_a_wrong_or_unknown_key_is_refused_on_the_page(portal_app: FastAPI) -> None:
    async with portal_browser(portal_app) as client:
        unknown = await sign_in(client, "pbk_" + "A" * 43)
        junk = await sign_in(client, "not a key")
    assert unknown.status_code == 401
    assert "not valid" in unknown.text
    assert junk.status_code == 401


async def test_every_page_sets_a_csp_without_inline_scripts(person: httpx.AsyncClient) -> None:
    for path in ["/portal", "/portal/tasks", "/portal/subscriptions", "/portal/deliveries"]:
        response = await person.get(path)
        assert response.status_code == 200, path
        policy = response.headers["content-security-policy"]
        assert "script-src 'none'" in policy
        assert "unsafe-inline" not in policy
        assert response.headers["x-frame-options"] == "DENY"
        assert "<script" not in response.text


async def test_a_form_post_without_the_csrf_token_is_refused(person: httpx.AsyncClient) -> None:
    response = await person.post("/portal/subscriptions", data={"url": "http://127.0.0.1:9/h"})
    assert response.status_code == 403
    assert "CSRF" in response.text
    listing = await person.get("/portal/subscriptions")
    assert "127.0.0.1:9" not in listing.text


async def test_sign_in_without_the_forms_token_is_refused(portal_app: FastAPI, key: str) -> None:
    async with portal_browser(portal_app) as client:
        response = await client.post("/portal/sign-in", data={"api_key": key, "csrf": "x"})
    assert response.status_code == 403


async def test_sign_out_ends_the_session_even_for_a_copy_of_the_cookie(
    portal_app: FastAPI, person: httpx.AsyncClient
) -> None:
    copied = person.cookies.get("pb_portal", path="/portal")
    assert copied
    response = await person.post("/portal/sign-out", data={"csrf": await page_csrf(person)})
    assert response.status_code == 303
    assert (await person.get("/portal")).status_code == 303
    async with portal_browser(portal_app) as replay:
        replay.cookies.set("pb_portal", copied, path="/portal")
        assert (await replay.get("/portal")).status_code == 303


async def test_another_clients_task_answers_404(
    person: httpx.AsyncClient, api: httpx.AsyncClient, portal_app: FastAPI
) -> None:
    other = await new_key(portal_app.state.settings)
    created = await api.post("/v1/tasks", json={"task_id": "OTHERS-1"}, headers=bearer(other))
    assert created.status_code == 201
    response = await person.get("/portal/tasks/OTHERS-1")
    assert response.status_code == 404
    assert "OTHERS-1" not in (await person.get("/portal/tasks")).text


@pytest.mark.parametrize(
    "path",
    [
        "/portal/subscriptions/sub_%00/reveal",
        "/portal/subscriptions/" + "s" * 300 + "/rotate",
        "/portal/events/evt_%00/redeliver",
        "/portal/subscriptions/not%20an%20id/recover",
    ],
)
async def test_an_id_that_cannot_exist_answers_the_404_page_of_the_rest_apis_rule(
    person: httpx.AsyncClient, path: str
) -> None:
    # The same rule as the REST path parameters (service/features/ids.py): no query, no 5xx.
    form = {"csrf": await page_csrf(person), "since": "2026-12-01T09:30"}
    response = await person.post(path, data=form)
    assert response.status_code == 404
    assert "for this client" in response.text


async def test_script_in_metadata_renders_as_text(
    person: httpx.AsyncClient, api: httpx.AsyncClient, key: str
) -> None:
    hostile = "<script>alert(1)</script>"
    created = await api.post(
        "/v1/tasks",
        json={"task_id": "XSS-1", "metadata": {"note": hostile, "<b>": "x"}},
        headers=bearer(key),
    )
    assert created.status_code == 201
    for path in ["/portal/tasks", "/portal/tasks/XSS-1"]:
        page = await person.get(path)
        assert page.status_code == 200
        assert "<script>" not in page.text
        assert "&lt;script&gt;" in page.text


async def test_a_cookie_with_another_client_id_does_not_open(
    person: httpx.AsyncClient, portal_app: FastAPI
) -> None:
    sealed = person.cookies.get("pb_portal", path="/portal")
    assert sealed
    raw = bytearray(base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4)))
    raw[20] ^= 1  # any change to the sealed claims breaks the seal
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    async with portal_browser(portal_app) as attacker:
        attacker.cookies.set("pb_portal", forged, path="/portal")
        assert (await attacker.get("/portal")).status_code == 303


async def test_one_sessions_csrf_token_does_not_work_in_another(
    portal_app: FastAPI, person: httpx.AsyncClient
) -> None:
    theirs = await page_csrf(person)
    async with portal_browser(portal_app) as mine:
        await sign_in(mine, await new_key(portal_app.state.settings))
        response = await mine.post(
            "/portal/subscriptions", data={"url": "http://127.0.0.1:9/h", "csrf": theirs}
        )
        assert response.status_code == 403
        assert csrf_of((await mine.get("/portal")).text) != theirs


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/portal/no-such-page", 404),
        ("DELETE", "/portal", 405),
        ("PUT", "/portal/sign-in", 405),
    ],
)
async def test_what_no_portal_route_answers_carries_the_portal_headers_too(
    portal_app: FastAPI, method: str, path: str, status: int
) -> None:
    async with portal_browser(portal_app) as client:
        response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
