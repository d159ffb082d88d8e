"""The interactive docs (service/api/docs.py) work on a machine without internet: every script
and style they load is served by the API itself."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from service.api.docs import ASSETS_URL, DOCS_URL, REDOC_URL, install_docs


def docs_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None)
    install_docs(app)
    return app


@pytest.mark.parametrize("page", [DOCS_URL, REDOC_URL])
async def test_a_docs_page_loads_only_what_the_api_serves(page: str) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=docs_app()), base_url="http://test"
    ) as http:
        html = await http.get(page)
        loaded = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assets = [await http.get(url) for url in loaded]

    assert html.status_code == 200
    assert loaded
    assert all(url.startswith(ASSETS_URL + "/") for url in loaded)
    assert all(asset.status_code == 200 and asset.content for asset in assets)
