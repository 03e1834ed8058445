"""The one home of backend-URI syntax: scheme, user info, password masking, local paths.

A URI is ``scheme://[user[:password]@]host...``.  The user info ends at the *last*
``@`` before the host, so a password may hold any character (``/``, ``@``, ``:``,
``%``, ``#``, ``?``) written as it is; an ``@`` in the path or query must be written
``%40``.  A URI whose text after ``://`` starts with ``/`` (``sqlite:///x.db``,
``file:///dir``) has no user info at all.  Every message, log record and repr shows a
URI through ``mask_password``, and text that may quote one (a driver's error) goes
through ``redact``.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "MASK",
    "Authority",
    "base_scheme",
    "hide_secret",
    "local_path",
    "mask_password",
    "redact",
    "split_authority",
    "split_scheme",
]

#: What a password is replaced with.
MASK: Final = "***"


@dataclass(frozen=True)
class Authority:
    """A URI cut at its user info: ``scheme://user:password@rest``."""

    scheme: str
    user: str | None
    password: str | None
    rest: str


def split_scheme(uri: str) -> tuple[str, str] | None:
    """``(scheme, text after "://")``, or None when ``uri`` has no ``://``."""
    scheme, sep, rest = uri.partition("://")
    return (scheme, rest) if sep else None


def base_scheme(uri: str) -> str | None:
    """The scheme without its driver, lower case (``postgresql+psycopg2://`` -> ``postgresql``)."""
    parts = split_scheme(uri)
    return None if parts is None else parts[0].split("+", 1)[0].lower()


def split_authority(uri: str) -> Authority | None:
    """Cut ``uri`` at the last ``@`` before the host; None when it has no ``://``."""
    parts = split_scheme(uri)
    if parts is None:
        return None
    scheme, rest = parts
    at = -1 if rest.startswith("/") else rest.rfind("@")
    if at < 0:
        return Authority(scheme, None, None, rest)
    userinfo, host = rest[:at], rest[at + 1 :]
    user, colon, password = userinfo.partition(":")
    return Authority(scheme, user, password if colon else None, host)


def mask_password(uri: str) -> str:
    """``uri`` with its password (whatever characters it holds) replaced by ``***``."""
    authority = split_authority(uri) if isinstance(uri, str) else None
    if authority is None or not authority.password:
        return uri
    return f"{authority.scheme}://{authority.user}:{MASK}@{authority.rest}"


def redact(text: str, uri: str) -> str:
    """``text`` with ``uri`` masked and every spelling of its password hidden."""
    authority = split_authority(uri) if isinstance(uri, str) else None
    password = authority.password if authority is not None else None
    if not password:
        return text
    return hide_secret(text.replace(uri, mask_password(uri)), password)


def hide_secret(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` (raw, %-decoded or %-encoded) replaced by ``***``."""
    if not secret:
        return text
    spellings = {secret, urllib.parse.unquote(secret), urllib.parse.quote(secret, safe="")}
    for spelling in sorted(spellings, key=len, reverse=True):
        if spelling:
            text = text.replace(spelling, MASK)
    return text


def local_path(uri: str) -> Path | None:
    """The file a ``sqlite://`` URI or the directory a ``file://`` URI names, else None.

    SQLite follows SQLAlchemy: ``sqlite:///rel.db`` is relative to the working
    directory, ``sqlite:////abs.db`` absolute; in-memory databases have no path.
    """
    parts = split_scheme(uri)
    scheme = base_scheme(uri)
    if parts is None or scheme not in ("sqlite", "file"):
        return None
    rest = parts[1].split("?", 1)[0]
    if scheme == "file":
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(uri).path))
    database = rest[1:] if rest.startswith("/") else rest
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)
