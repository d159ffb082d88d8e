"""The rules every feature shares: one page fetched with one row more than asked, and an id that
cannot name anything answered as not found."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.features.errors import NotFound
from service.features.ids import require_event_id, require_subscription_id, require_task_id
from service.features.paging import fetch_page


async def test_a_page_asks_for_one_row_more_and_cuts_it_off() -> None:
    asked: list[int] = []

    async def rows(limit: int) -> list[int]:
        asked.append(limit)
        return list(range(limit))

    page = await fetch_page(rows, 3)

    assert asked == [4]
    assert (page.items, page.more, page.last) == ([0, 1, 2], True, 2)


async def test_a_short_answer_is_the_last_page() -> None:
    async def rows(limit: int) -> list[str]:
        return ["only"]

    page = await fetch_page(rows, 3)

    assert (page.items, page.more, page.last) == (["only"], False, None)


@pytest.mark.parametrize(
    ("require", "value", "resource"),
    [
        (require_task_id, "T-\x00", "task"),
        (require_task_id, "t" * 129, "task"),
        (require_event_id, "evt_" + "a" * 64, "event"),
        (require_subscription_id, "sub_x y", "subscription"),
    ],
)
def test_an_id_of_the_wrong_shape_is_not_found(
    require: Callable[[str], str], value: str, resource: str
) -> None:
    with pytest.raises(NotFound) as refused:
        require(value)
    assert refused.value.resource == resource
    # The id is echoed back cut to the longest an id of its kind can be.
    assert len(refused.value.detail) < 200


def test_an_id_of_the_right_shape_passes() -> None:
    assert require_task_id("T-123") == "T-123"
