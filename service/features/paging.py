"""One page of a list, the same way everywhere: the default and largest page sizes, and one row
more than asked fetched to tell whether another page exists."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 500

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    # Another page follows the last item.
    more: bool

    @property
    def last(self) -> T | None:
        """The item the next page starts after, when there is a next page."""
        return self.items[-1] if self.more and self.items else None


async def fetch_page(fetch: Callable[[int], Awaitable[Sequence[T]]], size: int) -> Page[T]:
    """Call `fetch(size + 1)` (a store query taking a row limit) and cut its answer to a page."""
    rows = list(await fetch(size + 1))
    return Page(rows[:size], len(rows) > size)
