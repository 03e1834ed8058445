"""Keyset paging for the read model: cursors, positions, pages and their arguments.

A page of a listing ends in a cursor, the ``(created_at, uuid)`` of its last record,
so the next page is read from the index where this one stopped: page 2,000 costs
what page 1 costs.  A page listed around a corrupt record ends in a position
instead (a cursor plus rows to skip), so paging goes on past it.  Nothing here
reads the store.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from ledgerflow.models import FlowDetail, LogBook
from ledgerflow.persistence.listing import Cursor

__all__ = [
    "MAX_PAGE",
    "PAGE_SIZE",
    "Page",
    "check_limit",
    "check_offset",
    "check_state",
    "decode_cursor",
    "encode_cursor",
    "encode_position",
    "next_cursor",
    "read_position",
]

#: Items per page unless the caller says otherwise (API.md: 50).
PAGE_SIZE = 50
#: The most a page may hold (a bigger limit is a ValueError, so a URL cannot ask for all).
MAX_PAGE = 1000
T = TypeVar("T")


def encode_cursor(created_at: datetime, uuid: str) -> str:
    """An opaque, URL-safe text for the keyset position (created_at, uuid)."""
    raw = json.dumps([created_at.astimezone(UTC).isoformat(), uuid], ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """The (created_at, uuid) that ``encode_cursor`` made; ValueError naming a bad one."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        at_text, uuid = json.loads(raw.decode("utf-8"))
        at = datetime.fromisoformat(at_text)
        if at.tzinfo is None or not isinstance(uuid, str):
            raise ValueError("not an aware time and a uuid")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed cursor {text[:80]!r}: use the 'next' value of a page") from exc
    return at, uuid


def read_position(text: str | None) -> tuple[Cursor | None, int]:
    """The keyset cursor and the rows to skip past it that a page's ``next`` names.

    A plain cursor is ``encode_cursor``'s; a page listed around a corrupt record ends
    in a position instead (a cursor, or none, plus a count of rows), see
    ``encode_position``.
    """
    if not text:
        return None, 0
    try:
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8"))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raw = None
    if isinstance(raw, list) and len(raw) == 3:
        at_text, uuid, skip = raw
        if isinstance(skip, int) and not isinstance(skip, bool) and skip >= 0:
            if at_text is None and uuid is None:
                return None, skip
            return decode_cursor(encode_cursor(_aware(at_text), uuid)), skip
    return decode_cursor(text), 0


def _aware(text: object) -> datetime:
    at = datetime.fromisoformat(text) if isinstance(text, str) else None
    if at is None or at.tzinfo is None:
        raise ValueError("malformed cursor: use the 'next' value of a page")
    return at


def encode_position(cursor: Cursor | None, skip: int) -> str:
    """An opaque text for "``skip`` rows past ``cursor``" (None: from the first row)."""
    at = None if cursor is None else cursor[0].astimezone(UTC).isoformat()
    raw = json.dumps([at, None if cursor is None else cursor[1], skip], ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing: its items, how many match in all, and the next cursor."""

    items: list[T]
    total: int | None  # None when the caller asked not to count (count=False)
    next: str | None
    offset: int = 0


def check_limit(limit: int) -> int:
    """``limit`` if it is a page size from 1 to ``MAX_PAGE``, else ValueError naming it."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE}, not {limit!r}")
    return limit


def check_offset(offset: int) -> int:
    """``offset`` if it is a non-negative integer, else ValueError naming it."""
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ValueError(f"offset must be a non-negative integer, not {offset!r}")
    return offset


def next_cursor(found: Sequence[LogBook | FlowDetail], limit: int) -> str | None:
    """The cursor after the ``limit``-th record of ``found`` (one row past the page), or None."""
    if len(found) <= limit:
        return None
    last = found[limit - 1]
    return encode_cursor(last.created_at, last.uuid)


def check_state(state: str | None, allowed: Iterable[str]) -> str | None:
    """``state`` upper-cased if it is one of ``allowed`` (None if not given), else ValueError."""
    if not state:
        return None
    wanted = state.upper()
    if wanted not in set(allowed):
        raise ValueError(
            f"unknown state {state[:40]!r}: expected one of {', '.join(sorted(allowed))}"
        )
    return wanted
