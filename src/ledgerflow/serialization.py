"""JSON encoding of user values (results, meta, checkpoints, stores).

Everything a user hands to ledgerflow is stored as JSON: it is readable by any
tool, and loading it never imports or executes code (unlike pickle).
"""

from __future__ import annotations

import json
from typing import Any

from ledgerflow.errors import CorruptRecordError, SerializationError

FORMAT = "json"

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_decoder = json.JSONDecoder()


def dumps(value: Any, what: str) -> str:
    """Encode ``value`` as JSON text; SerializationError names ``what`` on failure."""
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(f"{what} is not JSON-encodable: {exc}") from exc


def loads(text: str | bytes | None, what: str) -> Any:
    """Decode JSON text (None stays None); CorruptRecordError names ``what`` on failure."""
    if text is None or text == "null":  # the commonest stored value: skip the decoder
        return None
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")
    try:
        return _decoder.decode(text)
    except (TypeError, ValueError) as exc:
        raise CorruptRecordError(f"{what} is corrupt: {exc}") from exc


def check(value: Any, what: str) -> None:
    """Raise SerializationError unless ``value`` can be encoded as JSON."""
    dumps(value, what)
