"""Typed values in tagged JSON: what ``serialization`` writes for anything beyond plain JSON.

Plain JSON values (str, int, float, bool, None, lists, dicts with string keys) are
written as they are.  Every other supported value becomes a small object with the
reserved key ``"$lf"`` naming its type::

    (1, 2)                      {"$lf": "tuple", "v": [1, 2]}
    {1: "a"}                    {"$lf": "dict", "v": [[1, "a"]]}
    datetime(2026, 1, 2, 3, 4)  {"$lf": "datetime", "v": "2026-01-02T03:04:00"}
    Color.RED                   {"$lf": "enum", "type": "shop.colors:Color", "name": "RED", "v": 1}

A user dict that itself has a ``"$lf"`` key is written in the ``dict`` form, so
reading back never mistakes user data for a tag.  Decoding imports nothing: an Enum,
dataclass or namedtuple comes back as its class only when that class's module is
already imported (or the type is registered), else as an ``UnresolvedValue`` that
keeps the stored form and writes it back unchanged.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
import math
import sys
import threading
import uuid
import zoneinfo
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final

__all__ = [
    "MARK",
    "Unencodable",
    "UnresolvedValue",
    "decode_object",
    "encode",
    "is_plain",
    "register_type",
]

MARK: Final = "$lf"
#: Types written as they are; containers of only these need no walk below them.
_LEAVES: Final = frozenset({str, int, float, bool, type(None)})
#: The same without float (a float may be NaN or infinite, which JSON cannot hold).
_EXACT_LEAVES: Final = frozenset({str, int, bool, type(None)})
_STR: Final = frozenset({str})


class Unencodable(Exception):
    """Raised inside ``encode`` for a value of no known type; ``path`` is filled on the way out."""

    def __init__(self, value: Any) -> None:
        super().__init__(type(value))
        self.value = value
        self.path: list[Any] = []

    def where(self) -> str:
        """The path to the value inside the whole, e.g. ``['items'][2]``, or 'the top'."""
        return "".join(f"[{key!r}]" for key in reversed(self.path)) or "the top"


@dataclasses.dataclass(frozen=True, eq=False)
class UnresolvedValue:
    """A stored Enum member, dataclass, namedtuple or registered type whose class is unknown here.

    ``type_name`` is the stored ``"module:Qualname"`` (or registered name), ``value`` the
    decoded payload (the member's value, the fields, the items); writing it back stores
    exactly what was read.
    """

    kind: str
    type_name: str
    value: Any
    stored: dict[str, Any] = dataclasses.field(repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UnresolvedValue):
            return NotImplemented
        return self.stored == other.stored

    def __hash__(self) -> int:
        return hash(json.dumps(self.stored, sort_keys=True))


# ---- registered types ----------------------------------------------------------
_registry_lock = threading.Lock()
_by_class: dict[type, tuple[str, Callable[[Any], Any]]] = {}
_by_name: dict[str, tuple[type, Callable[[Any], Any]]] = {}


def register_type(
    cls: type,
    encode: Callable[[Any], Any],
    decode: Callable[[Any], Any],
    name: str | None = None,
) -> None:
    """Store instances of ``cls`` as ``encode(obj)`` (any storable value), read back by ``decode``.

    ``name`` (default ``"module:Qualname"``) is what the stored form records: keep it
    when the class moves.  Registering a class again replaces its functions.
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_type needs a class, not {cls!r}")
    if not callable(encode) or not callable(decode):
        raise TypeError(f"register_type({cls.__qualname__}): encode and decode must be callable")
    key = _qualified(cls) if name is None else name
    if not isinstance(key, str) or not key:
        raise ValueError(f"register_type({cls.__qualname__}): name must be a non-empty string")
    with _registry_lock:
        known = _by_name.get(key)
        if known is not None and known[0] is not cls and _qualified(known[0]) != _qualified(cls):
            raise ValueError(f"type name {key!r} is already registered for {_qualified(known[0])}")
        previous = _by_class.pop(cls, None)
        if previous is not None:
            _by_name.pop(previous[0], None)
        _by_class[cls] = (key, encode)
        _by_name[key] = (cls, decode)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _registered(value: Any) -> tuple[str, Callable[[Any], Any]] | None:
    entry = _by_class.get(type(value))
    if entry is None and _by_class:
        entry = next((e for c, e in list(_by_class.items()) if isinstance(value, c)), None)
    return entry


# ---- encoding --------------------------------------------------------------------
def is_plain(value: Any) -> bool:
    """Whether ``value`` is plain JSON that JSON keeps as it is (no walk builds anything).

    The fast pass ahead of ``encode``: most stored values are plain, and for them this
    loop is all the typed-value support costs.
    """
    stack = [value]
    pop, push = stack.pop, stack.append
    leaves, string = _EXACT_LEAVES, str
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            if MARK in item:
                return False
            for key, child in item.items():
                if type(key) is not string:
                    return False
                child_kind = type(child)
                if child_kind in leaves:
                    continue
                if child_kind is dict or child_kind is list:
                    push(child)
                elif child_kind is not float or not math.isfinite(child):
                    return False
        elif kind is list:
            for child in item:
                child_kind = type(child)
                if child_kind in leaves:
                    continue
                if child_kind is dict or child_kind is list:
                    push(child)
                elif child_kind is not float or not math.isfinite(child):
                    return False
        elif kind not in leaves and (kind is not float or not math.isfinite(item)):
            return False
    return True


def encode(value: Any) -> Any:
    """The JSON-safe form of ``value``; parts that need no tag are shared, not copied.

    Raises ``Unencodable`` (with the path) for a value of no known type.
    """
    kind = type(value)
    if kind in _LEAVES:
        return value if kind is not float or math.isfinite(value) else _float(value)
    if kind is list:
        return _list(value)
    if kind is dict:
        return _dict(value)
    entry = _by_class.get(kind) if _by_class else None
    if entry is not None:
        return _custom(value, entry)
    handler = _EXACT.get(kind)
    if handler is not None:
        return handler(value)
    return _other(value)


def _finite(values: Any) -> bool:
    return all(math.isfinite(v) for v in values if type(v) is float)


def _list(items: list[Any]) -> Any:
    types = set(map(type, items))  # in C: most lists need no Python loop at all
    if types <= _EXACT_LEAVES or (types <= _LEAVES and _finite(items)):
        return items
    out: list[Any] | None = None
    index = 0
    try:
        for index, item in enumerate(items):
            if type(item) in _EXACT_LEAVES:
                continue
            new = _child(item)
            if new is not item:
                if out is None:
                    out = list(items)
                out[index] = new
    except Unencodable as exc:
        exc.path.append(index)
        raise
    return items if out is None else out


def _dict(mapping: dict[Any, Any]) -> Any:
    if MARK in mapping or not set(map(type, mapping)) <= _STR:
        return _pairs(mapping)
    types = set(map(type, mapping.values()))
    if types <= _EXACT_LEAVES or (types <= _LEAVES and _finite(mapping.values())):
        return mapping
    out: dict[str, Any] | None = None
    key = None
    try:
        for key, item in mapping.items():
            if type(item) in _EXACT_LEAVES:
                continue
            new = _child(item)
            if new is not item:
                if out is None:
                    out = dict(mapping)
                out[key] = new
    except Unencodable as exc:
        exc.path.append(key)
        raise
    return mapping if out is None else out


def _child(item: Any) -> Any:
    """``encode`` for an item of a container, with the commonest types dispatched first."""
    kind = type(item)
    if kind in _EXACT_LEAVES:
        return item
    if kind is dict:
        return _dict(item)
    if kind is list:
        return _list(item)
    if kind is float:
        return item if math.isfinite(item) else _float(item)
    handler = _EXACT.get(kind)
    if handler is not None and kind not in _by_class:  # a registered class comes first
        return handler(item)
    return encode(item)


def _pairs(mapping: dict[Any, Any]) -> dict[str, Any]:
    """A dict whose keys JSON cannot keep (or that holds the tag key): a list of pairs."""
    pairs = []
    for key, item in mapping.items():
        try:
            pairs.append([encode(key), encode(item)])
        except Unencodable as exc:
            exc.path.append(key)
            raise
    return {MARK: "dict", "v": pairs}


def _items(kind: str, items: Any) -> dict[str, Any]:
    return {MARK: kind, "v": _list(list(items))}


def _unordered(kind: str, items: set[Any] | frozenset[Any]) -> dict[str, Any]:
    try:  # one stored form for one set, whatever the hash seed
        ordered = sorted(items)
    except TypeError:
        ordered = list(items)
    return _items(kind, ordered)


def _float(value: float) -> dict[str, Any]:
    return {MARK: "float", "v": repr(value)}


def _datetime(value: datetime) -> dict[str, Any]:
    out = {MARK: "datetime", "v": value.isoformat()}
    key = getattr(value.tzinfo, "key", None)
    if isinstance(value.tzinfo, zoneinfo.ZoneInfo) and key:
        out["tz"] = key  # the zone, not only this instant's offset
    return out


def _custom(value: Any, entry: tuple[str, Callable[[Any], Any]]) -> dict[str, Any]:
    name, encoder = entry
    return {MARK: "type", "type": name, "v": encode(encoder(value))}


def _enum(value: enum.Enum) -> dict[str, Any]:
    cls = type(value)
    return {MARK: "enum", "type": _qualified(cls), "name": value.name, "v": encode(value.value)}


def _dataclass(value: Any) -> dict[str, Any]:
    fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return {MARK: "dataclass", "type": _qualified(type(value)), "v": _dict(fields)}


def _other(value: Any) -> Any:
    """Subclasses, enums, dataclasses and registered base classes (the slow path)."""
    entry = _registered(value)
    if entry is not None:
        return _custom(value, entry)
    if isinstance(value, UnresolvedValue):
        return value.stored
    if isinstance(value, enum.Enum):
        return _enum(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass(value)
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):
        cls = type(value)
        return {MARK: "namedtuple", "type": _qualified(cls), "v": _list(list(value))}
    for base, handler in _EXACT.items():
        if isinstance(value, base):
            return handler(value)
    if isinstance(value, dict):
        return _dict(value)
    if isinstance(value, list):
        return _list(value)
    if isinstance(value, str | int | float):  # str/int/float subclasses: their plain value
        return value
    raise Unencodable(value)


_EXACT: Final[dict[type, Callable[[Any], Any]]] = {
    tuple: lambda v: _items("tuple", v),
    set: lambda v: _unordered("set", v),
    frozenset: lambda v: _unordered("frozenset", v),
    bytes: lambda v: {MARK: "bytes", "v": base64.b64encode(v).decode("ascii")},
    bytearray: lambda v: {MARK: "bytearray", "v": base64.b64encode(v).decode("ascii")},
    datetime: _datetime,
    date: lambda v: {MARK: "date", "v": v.isoformat()},
    time: lambda v: {MARK: "time", "v": v.isoformat()},
    timedelta: lambda v: {MARK: "timedelta", "v": [v.days, v.seconds, v.microseconds]},
    Decimal: lambda v: {MARK: "decimal", "v": str(v)},
    uuid.UUID: lambda v: {MARK: "uuid", "v": str(v)},
}


# ---- decoding --------------------------------------------------------------------
def decode_object(stored: dict[str, Any]) -> Any:
    """The value a parsed JSON object stands for: ``json``'s ``object_hook``.

    The parser calls it innermost first, so a tag's payload arrives decoded already.
    Called for every object in tagged text, so the commonest tags take one table
    lookup and one call on the payload.
    """
    tag = stored.get(MARK)
    if tag is None or type(tag) is not str:
        return stored
    simple = _FROM_PAYLOAD.get(tag)
    if simple is not None:
        return simple(stored["v"])
    decoder = _DECODERS.get(tag)
    if decoder is None:  # written by a newer ledgerflow: keep it as it was
        return UnresolvedValue(tag, str(stored.get("type", "")), stored.get("v"), stored)
    return decoder(stored)


def _payload(stored: dict[str, Any]) -> Any:
    return stored.get("v")


def _lookup(type_name: Any) -> Any:
    """The class ``"module:Qualname"`` names if its module is imported already, else None."""
    if not isinstance(type_name, str):
        return None
    module_name, _, qualname = type_name.partition(":")
    obj: Any = sys.modules.get(module_name)
    for part in qualname.split(".") if obj is not None and qualname else ():
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, type) else None


def _unresolved(kind: str, stored: dict[str, Any], value: Any) -> UnresolvedValue:
    raw = json.loads(json.dumps(encode(value)))  # what was stored, before decoding
    original = {**stored, "v": raw}
    return UnresolvedValue(kind, str(stored.get("type", "")), value, original)


def _enum_value(stored: dict[str, Any]) -> Any:
    value = _payload(stored)
    cls = _lookup(stored.get("type"))
    if isinstance(cls, type) and issubclass(cls, enum.Enum):
        try:
            return cls[str(stored.get("name"))]
        except KeyError:
            try:
                return cls(value)
            except ValueError:
                pass
    return _unresolved("enum", stored, value)


def _dataclass_value(stored: dict[str, Any]) -> Any:
    fields = _payload(stored)
    cls = _lookup(stored.get("type"))
    if isinstance(cls, type) and dataclasses.is_dataclass(cls) and isinstance(fields, dict):
        try:
            return _build(cls, fields)
        except (TypeError, ValueError, AttributeError):
            pass  # the class changed since: keep the stored fields
    return _unresolved("dataclass", stored, fields)


def _build(cls: type, fields: dict[str, Any]) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    if set(fields) != set(known):
        raise TypeError("fields differ")
    obj = cls(**{k: v for k, v in fields.items() if known[k].init})
    for key, item in fields.items():
        if not known[key].init:
            object.__setattr__(obj, key, item)
    return obj


def _namedtuple_value(stored: dict[str, Any]) -> Any:
    items = _payload(stored)
    cls = _lookup(stored.get("type"))
    if cls is not None and issubclass(cls, tuple) and isinstance(items, list):
        try:
            return cls(*items)
        except TypeError:
            pass
    return _unresolved("namedtuple", stored, items)


def _custom_value(stored: dict[str, Any]) -> Any:
    payload = _payload(stored)
    entry = _by_name.get(stored.get("type"))  # type: ignore[arg-type]
    if entry is not None:
        return entry[1](payload)
    return _unresolved("type", stored, payload)


def _datetime_value(stored: dict[str, Any]) -> datetime:
    moment = datetime.fromisoformat(stored["v"])
    zone = stored.get("tz")
    if zone and moment.tzinfo is not None:
        try:
            return moment.astimezone(zoneinfo.ZoneInfo(zone))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass  # this machine lacks the zone: the fixed offset is still the same instant
    return moment


def _items_of(payload: Any) -> list[Any]:
    if type(payload) is not list:
        raise ValueError("items must be a list")
    return payload


def _tuple_value(payload: Any) -> tuple[Any, ...]:
    return tuple(_items_of(payload))


def _set_value(payload: Any) -> set[Any]:
    return set(_items_of(payload))


def _frozenset_value(payload: Any) -> frozenset[Any]:
    return frozenset(_items_of(payload))


def _bytes_value(payload: Any) -> bytes:
    return binascii.a2b_base64(payload, strict_mode=True)


def _pairs_value(stored: dict[str, Any]) -> dict[Any, Any]:
    return {key: item for key, item in _payload(stored)}


def _timedelta_value(stored: dict[str, Any]) -> timedelta:
    days, seconds, microseconds = stored["v"]
    return timedelta(days=days, seconds=seconds, microseconds=microseconds)


#: Tags whose value is rebuilt from the payload ``"v"`` alone.
_FROM_PAYLOAD: Final[dict[str, Callable[[Any], Any]]] = {
    "tuple": _tuple_value,
    "set": _set_value,
    "frozenset": _frozenset_value,
    "bytes": _bytes_value,
    "bytearray": lambda v: bytearray(_bytes_value(v)),
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "float": float,
}
#: Tags that need more of the stored object than its payload.
_DECODERS: Final[dict[str, Callable[[dict[str, Any]], Any]]] = {
    "dict": _pairs_value,
    "datetime": _datetime_value,
    "timedelta": _timedelta_value,
    "enum": _enum_value,
    "dataclass": _dataclass_value,
    "namedtuple": _namedtuple_value,
    "type": _custom_value,
}
