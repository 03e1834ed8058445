"""Listings that show a corrupt record as such and still list the others (API.md, Store care).

A page that fails to load because one record in it is corrupt is split in halves
until the corrupt record stands alone, so one bad record costs a few more queries,
not a listing.  Each corrupt entry is the ``CorruptRecordError`` naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import ledgerflow as lf

__all__ = ["per_item", "robust_page"]

T = TypeVar("T")
U = TypeVar("U")


def robust_page(
    fetch: Callable[[int, int | None], Sequence[T]], offset: int, limit: int | None, total: int
) -> list[T | lf.CorruptRecordError]:
    """``fetch(offset, limit)``; if a corrupt record breaks it, each such record as its error.

    ``total`` (how many records match) bounds the page when ``limit`` is None.
    """
    try:
        return list(fetch(offset, limit))
    except lf.CorruptRecordError:
        count = max(total - offset, 0) if limit is None else limit
        return _split(fetch, offset, count)


def _split(
    fetch: Callable[[int, int | None], Sequence[T]], offset: int, count: int
) -> list[T | lf.CorruptRecordError]:
    if count <= 0:
        return []
    try:
        return list(fetch(offset, count))
    except lf.CorruptRecordError as exc:
        if count == 1:
            return [exc]
        half = count // 2
        return _split(fetch, offset, half) + _split(fetch, offset + half, count - half)


def per_item(
    load: Callable[[Sequence[str]], dict[str, U]], keys: Sequence[str]
) -> dict[str, U | lf.CorruptRecordError]:
    """``load(keys)``; if it fails on a corrupt record, each key loaded alone (errors kept)."""
    try:
        return dict(load(keys))
    except lf.CorruptRecordError:
        out: dict[str, U | lf.CorruptRecordError] = {}
        for key in keys:
            try:
                out.update(load([key]))
            except lf.CorruptRecordError as exc:
                out[key] = exc
        return out
