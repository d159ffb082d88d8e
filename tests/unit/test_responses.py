"""JSON answers (service/api/responses.py): orjson's bytes, UTC times as RFC 3339 with `Z`, and
integers beyond 64 bits still rendered."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from service.api.responses import NO_STORE, JsonResponse, json_response


def test_a_utc_time_is_rendered_with_z() -> None:
    response = JsonResponse({"at": datetime(2026, 12, 7, 12, 0, 5, tzinfo=UTC)})

    assert response.body == b'{"at":"2026-12-07T12:00:05Z"}'
    assert response.media_type == "application/json"


def test_an_integer_beyond_64_bits_is_still_rendered() -> None:
    big = 2**70

    assert orjson.loads(JsonResponse({"metadata": {"n": big}}).body) == {"metadata": {"n": big}}


def test_a_secret_answer_is_kept_by_no_cache() -> None:
    response = json_response({"secret": "whsec_x"}, status_code=200, headers=NO_STORE)

    assert response.headers["cache-control"] == "no-store"
    assert response.status_code == 200
