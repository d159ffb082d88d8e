"""How a portal page is rendered (service/api/portal/rendering.py): a refusal page with its
status, words escaped, a 404 that does not echo the id, and only the notices it names."""

from __future__ import annotations

from starlette.requests import Request

from service.api.portal.rendering import NOTICES, feature_refusal_page, refusal_page, render
from service.features.errors import NotFound


def request(query: str = "") -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/portal/tasks/T-1",
            "query_string": query.encode(),
            "headers": [],
        }
    )


def test_a_refusal_page_carries_its_status_and_escapes_its_words() -> None:
    response = refusal_page(request(), 409, "the task <b>T-1</b> is already final")

    assert response.status_code == 409
    assert b"the task &lt;b&gt;T-1&lt;/b&gt; is already final" in response.body


def test_a_features_not_found_names_the_kind_of_thing_not_the_id() -> None:
    response = feature_refusal_page(request(), NotFound("task", "no task T-<script>"))

    assert response.status_code == 404
    assert b"no such task for this client" in response.body
    assert b"T-&lt;script&gt;" not in response.body
    assert b"<script>" not in response.body


def test_only_a_named_notice_is_shown_never_text_from_the_url() -> None:
    named = render(request("notice=signed-out"), "refused.html", {"status": 400, "detail": "x"})
    free = render(request("notice=<i>hello</i>"), "refused.html", {"status": 400, "detail": "x"})

    assert NOTICES["signed-out"].encode() in named.body
    assert b"hello" not in free.body
