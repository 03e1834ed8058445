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
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(f"{_name(what)} is not JSON-encodable: {exc}") from exc
    if "{" in text:  # JSON writes a dict as an object: look for keys it would rewrite
        _check_keys(value, what)
    return text


#: Types JSON writes as they are: a walk for dict keys never descends into them.
_LEAVES = frozenset({str, int, float, bool, type(None)})


def _check_keys(value: Any, what: What) -> None:
    """SerializationError for a dict key that is not a string.

    JSON turns 1, 2.5, True and None keys into strings, so the value a resumed flow
    reads back would differ from the one the first run passed on: refuse it instead.
    (Tuples coming back as lists is documented and harmless for unpacking.)
    """
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:  # the fast pass: no paths, no messages
        item = pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise _key_error(value, what)
                if type(child) not in _LEAVES:
                    push(child)
        elif isinstance(item, list | tuple):
            for child in item:
                if type(child) not in _LEAVES:
                    push(child)


def _key_error(value: Any, what: What) -> SerializationError:
    """Find the first non-string key again, this time keeping the path to name it."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return SerializationError(
                        f"{_name(what)} has a dict key {key!r} ({type(key).__name__}) at "
                        f"{path or 'the top'}: JSON keeps only string keys and would read it "
                        f"back as {json.dumps(key)!r}"
                    )
                stack.append((child, f"{path}[{key!r}]"))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(item))
    raise AssertionError("unreachable: the fast pass found a non-string key")


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
