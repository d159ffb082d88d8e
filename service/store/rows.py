"""Rows leave the store as frozen dataclasses; `row_as` builds one from a SQLAlchemy row."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Row

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    RowT = TypeVar("RowT", bound=DataclassInstance)
else:
    RowT = TypeVar("RowT")


def row_as(cls: type[RowT], row: Row[*tuple[Any, ...]], **converted: Any) -> RowT:
    """`cls` from the row's columns of its fields' names (others are left out); `converted`
    gives the fields whose column needs converting first, e.g. text to a StrEnum."""
    columns = row._mapping
    return cls(
        **{
            field.name: converted[field.name] if field.name in converted else columns[field.name]
            for field in fields(cls)
        }
    )
