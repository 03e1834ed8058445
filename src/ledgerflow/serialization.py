"""JSON encoding of user values (results, meta, checkpoints, stores).

Everything a user hands to ledgerflow is stored as JSON: it is readable by any
tool, and loading it never imports or executes code (unlike pickle).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ledgerflow.errors import CorruptRecordError, SerializationError

FORMAT = "json"

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_decoder = json.JSONDecoder()
_scan: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]


#: ``what`` names the value in error messages; a callable is only called on error, so hot
#: paths don't pay for formatting a message they never show.
What = str | Callable[[], str]


def _name(what: What) -> str:
    return what if isinstance(what, str) else what()


def dumps(value: Any, what: What) -> str:
    """Encode ``value`` as JSON text; SerializationError names ``what`` on failure."""
    if value is None:  # the commonest values: skip the encoder
        return "null"
    try:
        text: str = _encoder.encode(value)
        if not text.isascii():  # O(1) for ASCII text; a lone surrogate is no UTF-8
            text.encode("utf-8")
        return text
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(f"{_name(what)} is not JSON-encodable: {exc}") from exc


def loads(text: str | bytes | None, what: What) -> Any:
    """Decode JSON text (None stays None); CorruptRecordError names ``what`` on failure."""
    if text is None or text == "null":  # the commonest stored values: skip the decoder
        return None
    if text == "{}":
        return {}
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")
    try:
        # Our encoder writes no whitespace: the C scanner alone decodes it, skipping the
        # decoder's whitespace regexes (a third of the cost of loading 10,000 tasks).
        value, end = _scan(text, 0)
        if end == len(text):
            return value
    except (StopIteration, TypeError, ValueError):
        pass
    try:
        return _decoder.decode(text)
    except (TypeError, ValueError) as exc:
        raise CorruptRecordError(f"{_name(what)} is corrupt: {exc}") from exc


def check(value: Any, what: What) -> None:
    """Raise SerializationError unless ``value`` can be encoded as JSON."""
    dumps(value, what)
