"""Map a URI (or a dict with a ``connection`` URI) to a backend.

Built-in backends are named here by import path and loaded only when asked for,
so ``import ledgerflow`` imports no database driver.  Third-party backends
register a ``Backend`` subclass under the entry-point group ``ledgerflow.backends``
with their URI scheme as the entry point's name.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ledgerflow.errors import BackendNotFound
from ledgerflow.persistence.base import Backend
from ledgerflow.persistence.uri import base_scheme, mask_password

if TYPE_CHECKING:
    from importlib import metadata

ENTRY_POINT_GROUP = "ledgerflow.backends"

_SQL = "ledgerflow.persistence.sql.backend:SQLBackend"
#: scheme -> "module:attribute" of the built-in backends.
BUILTIN: dict[str, str] = {
    "memory": "ledgerflow.persistence.memory:MemoryBackend",
    "file": "ledgerflow.persistence.files:FileBackend",
    "sqlite": _SQL,
    "postgresql": _SQL,
    "postgres": _SQL,
    "mysql": _SQL,
    "mariadb": _SQL,
}


def _load(target: str) -> type[Backend]:
    module_name, _, attribute = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attribute)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendNotFound(f"{target} is not a ledgerflow Backend subclass")
    return cls


def _entry_points() -> dict[str, metadata.EntryPoint]:
    # Imported here: importlib.metadata (with email and friends) took a tenth of
    # `ledgerflow books`'s start-up, and built-in schemes never need it.
    from importlib import metadata

    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_schemes() -> list[str]:
    """Every URI scheme a backend is installed for, sorted."""
    return sorted(set(BUILTIN) | set(_entry_points()))


def scheme_of(uri: str) -> str:
    """Return the base scheme of ``uri`` (``postgresql+psycopg2://`` -> ``postgresql``)."""
    scheme = base_scheme(uri) if isinstance(uri, str) else None
    if scheme is None:
        shown = mask_password(uri) if isinstance(uri, str) else uri
        raise BackendNotFound(
            f"not a backend URI: {shown!r} (expected scheme://..., one of: "
            f"{', '.join(available_schemes())})"
        )
    return scheme


def backend_class(scheme: str) -> type[Backend]:
    """Return the Backend class serving ``scheme``; BackendNotFound lists the installed ones."""
    if scheme in BUILTIN:
        return _load(BUILTIN[scheme])
    entry_point = _entry_points().get(scheme)
    if entry_point is None:
        raise BackendNotFound(
            f"no backend for scheme {scheme!r}; installed schemes: {', '.join(available_schemes())}"
        )
    cls = entry_point.load()
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendNotFound(
            f"entry point {entry_point.value} is not a ledgerflow Backend subclass"
        )
    return cls


def open_backend(uri_or_dict: str | Mapping[str, Any] | Backend) -> Backend:
    """Return a backend for a URI, a ``{"connection": uri, **options}`` dict, or a Backend."""
    if isinstance(uri_or_dict, Backend):
        return uri_or_dict
    if isinstance(uri_or_dict, Mapping):
        options = dict(uri_or_dict)
        uri = options.pop("connection", None)
        if uri is None:
            raise BackendNotFound("a backend dict needs a 'connection' URI")
    else:
        uri, options = uri_or_dict, {}
    return backend_class(scheme_of(uri))(uri, **options)
