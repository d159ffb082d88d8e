"""The portal as tests use it: a client that keeps cookies on a loopback origin (where the session
cookie is not `Secure`), signing in with an API key, and the CSRF token of a page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

# A loopback origin: the portal sets its cookies without `Secure` only there.
PORTAL_ORIGIN = "http://127.0.0.1:8000"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@asynccontextmanager
async def portal_browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client with its own cookie jar, like one browser profile."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=PORTAL_ORIGIN) as client:
        yield client


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match is not None, "the page has no form with a CSRF token"
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    """Sign in as a person would: load the form, post the key with the form's token."""
    form = await client.get("/portal/sign-in")
    assert form.status_code == 200, form.text
    return await client.post("/portal/sign-in", data={"api_key": key, "csrf": csrf_of(form.text)})


async def page_csrf(client: httpx.AsyncClient, path: str = "/portal") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return csrf_of(page.text)
