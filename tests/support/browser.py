"""Headless Chromium for the portal's browser tests and scripts/screenshots: Debian's `chromium`
driven by Playwright (never `playwright install`, which downloads a browser), and the API served
over real HTTP on a free loopback port."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import uvicorn
from playwright.async_api import Browser, async_playwright

from service.api.app import create_app
from service.config import Settings
from service.serving import BackgroundServer

CHROMIUM = Path(os.environ.get("PHONEBRIDGE_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> Path:
    """The browser, or a failure that says how to get it (never a silent skip)."""
    if not CHROMIUM.exists():
        raise AssertionError(
            f"the portal's browser tests need Chromium at {CHROMIUM}; run scripts/install-browser "
            "(Debian's `chromium` package) or set PHONEBRIDGE_TEST_CHROMIUM"
        )
    return CHROMIUM


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    executable = require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(executable), args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


@contextmanager
def served_api(settings: Settings) -> Iterator[str]:
    """The real API app on a free loopback port; yields its base URL."""
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=0, log_level="warning", lifespan="on"
    )
    with BackgroundServer(
        uvicorn.Server(config), name="portal API", host="127.0.0.1", port=0
    ) as server:
        yield server.base_url
