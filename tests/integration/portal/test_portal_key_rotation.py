"""The portal across a rotation of PHONEBRIDGE_SECRET_KEY (service/api/portal/session.py): a person
signed in before it stays signed in and their open forms still post, sessions begun after it are
sealed under the new key, and a cookie sealed under a key no longer listed means signing in
again. Two real apps on one database, as two API processes of a rolling restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from service.api.app import create_app
from service.api.portal.session import SESSION_COOKIE
from tests.support.factories import new_key
from tests.support.portal import csrf_of, page_csrf, portal_browser, sign_in
from tests.support.settings import webhook_settings

OLD = "the-old-secret-key-of-this-deployment"
NEW = "the-new-secret-key-of-this-deployment"
STRANGER = "a-secret-key-nobody-listed-anywhere"


@asynccontextmanager
async def app_with(database_url: str, redis_url: str, **keys: str) -> AsyncIterator[FastAPI]:
    app = create_app(webhook_settings(database_url, redis_url, **keys))
    async with app.router.lifespan_context(app):
        yield app


async def signed_in_cookie(app: FastAPI, key: str) -> str:
    async with portal_browser(app) as browser:
        assert (await sign_in(browser, key)).status_code == 303
        cookie = browser.cookies.get(SESSION_COOKIE)
    assert cookie
    return cookie


@asynccontextmanager
async def browser_with(app: FastAPI, cookie: str) -> AsyncIterator[httpx.AsyncClient]:
    async with portal_browser(app) as browser:
        browser.cookies.set(SESSION_COOKIE, cookie)
        yield browser


async def test_a_session_from_before_the_rotation_stays_signed_in_and_its_forms_post(
    database_url: str, redis_url: str
) -> None:
    async with (
        app_with(database_url, redis_url, secret_key=OLD) as before,
        app_with(database_url, redis_url, secret_key=NEW, secret_key_previous=OLD) as after,
    ):
        key = await new_key(before.state.settings)
        cookie = await signed_in_cookie(before, key)
        async with browser_with(before, cookie) as old_tab:
            form_token = await page_csrf(old_tab)

        async with browser_with(after, cookie) as browser:
            page = await browser.get("/portal")
            assert page.status_code == 200, page.text
            signed_out = await browser.post("/portal/sign-out", data={"csrf": form_token})
            assert signed_out.status_code == 303
            assert signed_out.headers["location"].endswith("/portal/sign-in?notice=signed-out")


async def test_a_session_begun_after_the_rotation_is_sealed_under_the_new_key(
    database_url: str, redis_url: str
) -> None:
    async with (
        app_with(database_url, redis_url, secret_key=OLD) as before,
        app_with(database_url, redis_url, secret_key=NEW, secret_key_previous=OLD) as after,
        app_with(database_url, redis_url, secret_key=NEW) as new_only,
    ):
        key = await new_key(after.state.settings)
        cookie = await signed_in_cookie(after, key)

        async with browser_with(new_only, cookie) as browser:
            assert (await browser.get("/portal")).status_code == 200
        async with browser_with(before, cookie) as browser:
            refused = await browser.get("/portal")
            assert refused.status_code == 303
            assert refused.headers["location"].endswith("/portal/sign-in")


async def test_a_session_under_a_key_not_listed_signs_in_again(
    database_url: str, redis_url: str
) -> None:
    async with (
        app_with(database_url, redis_url, secret_key=STRANGER) as stranger,
        app_with(database_url, redis_url, secret_key=NEW, secret_key_previous=OLD) as after,
    ):
        key = await new_key(after.state.settings)
        cookie = await signed_in_cookie(stranger, key)

        async with browser_with(after, cookie) as browser:
            refused = await browser.get("/portal")
            assert refused.status_code == 303
            assert refused.headers["location"].endswith("/portal/sign-in")
            form = await browser.get("/portal/sign-in")
            assert form.status_code == 200
            csrf_of(form.text)
