"""JSON encoding of user values (results, meta, checkpoints, stores).

Everything a user hands to ledgerflow is stored as JSON: it is readable by any
tool, and loading it never imports or executes code (unlike pickle).  Values JSON
has no type for (datetimes, Decimals, tuples, sets, dict keys that are not strings,
Enums, dataclasses, registered types...) are written in the tagged form of
``ledgerflow.values``; plain JSON values are written exactly as before, so values
stored by earlier versions read back as they did.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ledgerflow import values
from ledgerflow.errors import CorruptRecordError, SerializationError

FORMAT = "json"

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_decoder = json.JSONDecoder()
#: Only for text that holds tags: each parsed object goes through ``values.decode_object``.
_tag_decoder = json.JSONDecoder(object_hook=values.decode_object)
_scan: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]
#: Only text holding this can hold a tagged value: the rest skips the decoding walk.
_TAG_TEXT = f'"{values.MARK}"'


#: ``what`` names the value in error messages; a callable is only called on error, so hot
#: paths don't pay for formatting a message they never show.
What = str | Callable[[], str]


def _name(what: What) -> str:
    return what if isinstance(what, str) else what()


def _type_name(value: Any) -> str:
    cls = type(value)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def to_json(value: Any, what: What) -> Any:
    """The JSON-safe (tagged) form of ``value``; SerializationError names what, where, type."""
    try:
        return value if values.is_plain(value) else values.encode(value)
    except values.Unencodable as exc:
        raise SerializationError(
            f"{_name(what)} cannot be stored: the value at {exc.where()} is of type "
            f"{_type_name(exc.value)}, which is neither JSON nor a type ledgerflow knows "
            "(lf.register_type adds one)"
        ) from None
    except RecursionError as exc:
        raise SerializationError(
            f"{_name(what)} cannot be stored: it is nested too deeply or contains itself"
        ) from exc


def dumps(value: Any, what: What) -> str:
    """Encode ``value`` as JSON text; SerializationError names ``what`` on failure."""
    if value is None:  # the commonest values: skip the encoder
        return "null"
    safe = to_json(value, what)
    try:
        text: str = _encoder.encode(safe)
        if not text.isascii():  # O(1) for ASCII text; a lone surrogate is no UTF-8
            text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(f"{_name(what)} is not JSON-encodable: {exc}") from exc
    return text


def loads(text: str | bytes | None, what: What) -> Any:
    """Decode JSON text (None stays None); CorruptRecordError names ``what`` on failure."""
    if text is None or text == "null":  # the commonest stored values: skip the decoder
        return None
    if text == "{}":
        return {}
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")
    if _TAG_TEXT not in text:
        return _parse(text, what)
    try:
        return _tag_decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise CorruptRecordError(f"{_name(what)} is corrupt: {exc}") from exc
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise CorruptRecordError(f"{_name(what)} holds a corrupt tagged value: {exc!r}") from exc


def _parse(text: str, what: What) -> Any:
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


def from_json(data: Any, what: What) -> Any:
    """The value a JSON-safe (tagged) form stands for; ``data`` itself is left untouched."""
    if data is None or type(data) in (str, int, float, bool):
        return data
    return loads(_encoder.encode(data), what)


def check(value: Any, what: What) -> None:
    """Raise SerializationError unless ``value`` can be encoded as JSON."""
    dumps(value, what)
