"""Every connection setting of the SQL backend, in one place, and driver-error translation.

A ledgerflow URI is a SQLAlchemy URL plus a few query options of ours, which are
stripped before SQLAlchemy sees the URL:

``synchronous``    SQLite only: ``full`` (default, a commit survives power loss) or
                   ``normal`` (survives a process crash, not power loss; faster)
``busy_timeout``   SQLite only: milliseconds to wait for another writer (default 30000)

A plain scheme picks the driver its extra installs (``postgresql://`` -> psycopg 3,
``mysql://``/``mariadb://`` -> PyMySQL); an explicit ``scheme+driver://`` is honoured.
Drivers are imported by SQLAlchemy when the engine is created, never at import time.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sqlite3
import threading
import urllib.parse
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import StaticPool

from ledgerflow.errors import (
    BackendNotFound,
    ConflictError,
    LedgerflowError,
    MissingDriverError,
    NotFound,
    SerializationError,
    StorageError,
)
from ledgerflow.persistence.sql.common import corrupt_store
from ledgerflow.persistence.sql.common import driver_codes as _driver_codes
from ledgerflow.persistence.sql.common import driver_error as _driver_error
from ledgerflow.persistence.sql.common import first_line as _first_line
from ledgerflow.persistence.sql.common import is_corrupt as _is_corrupt
from ledgerflow.persistence.sql.common import sqlite_words as _sqlite_words
from ledgerflow.persistence.uri import Authority, hide_secret, mask_password, split_authority

__all__ = ["StoreAddress", "create_engine", "parse_uri", "translate_errors"]

#: Default driver of each plain scheme: the one the matching extra installs.
DEFAULT_DRIVERS: Final = {
    "sqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
#: Backend name -> the extra that installs its default driver.
EXTRAS: Final = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}
SYNCHRONOUS_MODES: Final = ("full", "normal")

# ---- the settings -------------------------------------------------------------------
#: Seconds a client waits for a server to accept a connection before failing.
CONNECT_TIMEOUT: Final = 10
#: SQLite: milliseconds a writer waits for another's lock before "database is locked".
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
#: Recycle server connections after an hour: MySQL closes idle ones (wait_timeout).
POOL_RECYCLE_SECONDS: Final = 3600
#: READ COMMITTED on servers: every revision check happens inside the UPDATE itself
#: (compare-and-set), which READ COMMITTED evaluates against the latest committed row;
#: MySQL's default REPEATABLE READ would add gap locks and deadlocks for nothing.
SERVER_ISOLATION: Final = "READ COMMITTED"
#: Largest packet PyMySQL sends; the server's max_allowed_packet must allow it too.
MYSQL_CLIENT_MAX_PACKET: Final = 1 << 30


@dataclass
class StoreAddress:
    """A parsed URI: the SQLAlchemy URL and our own options."""

    url: URL
    synchronous: str = "full"
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
    memory: bool = False
    path: str | None = None
    lock: threading.RLock | None = field(default=None, repr=False)

    @property
    def backend_name(self) -> str:
        """``sqlite``, ``postgresql``, ``mysql`` or ``mariadb``."""
        return self.url.get_backend_name()

    @property
    def psycopg(self) -> bool:
        """PostgreSQL through psycopg 3 (the default): a level is set with no round trip.

        Another driver named in the URI (psycopg2) takes the ordinary transactions.
        """
        return self.backend_name == "postgresql" and self.url.get_driver_name() == "psycopg"

    @property
    def where(self) -> str:
        """Host and port (or the file) for messages; never the password."""
        if self.backend_name == "sqlite":
            return "memory" if self.memory else f"file {self.path}"
        port = self.url.port or {"postgresql": 5432}.get(self.backend_name, 3306)
        return f"{self.url.host or 'localhost'}:{port} (database {self.url.database!r})"


def parse_uri(uri: str) -> StoreAddress:
    """Parse a ledgerflow SQL URI; ValueError names what is wrong."""
    authority = split_authority(uri)
    if authority is None:
        raise ValueError(f"not a SQL URI: {mask(uri)!r}")
    base = authority.scheme.lower()
    if base.startswith("postgres+"):  # SQLAlchemy knows only the long name
        base = "postgresql+" + base.split("+", 1)[1]
    scheme = DEFAULT_DRIVERS.get(base, base)
    if scheme.startswith("sqlite") and not authority.rest.startswith("/") and authority.rest:
        raise ValueError(
            f"{mask(uri)!r} names a host ({authority.rest.split('/', 1)[0]!r}); a SQLite URI "
            "has three slashes: sqlite:///runs.db (relative) or sqlite:////abs/runs.db"
        )
    try:
        url = make_url(f"{scheme}://{_sqlalchemy_userinfo(authority)}{authority.rest}")
    except exc.ArgumentError:  # its message quotes the whole URI, password and all
        raise ValueError(f"malformed SQL URI {mask(uri)!r}") from None
    query = dict(url.query)
    synchronous = str(query.pop("synchronous", "full")).lower()
    busy = query.pop("busy_timeout", str(SQLITE_BUSY_TIMEOUT_MS))
    address = StoreAddress(url=url.set(query=query), synchronous=synchronous)
    if address.backend_name == "sqlite":
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(
                f"synchronous={synchronous!r} in {mask(uri)}: expected one of "
                f"{', '.join(SYNCHRONOUS_MODES)}"
            )
        try:
            address.busy_timeout_ms = int(str(busy))
        except ValueError:
            raise ValueError(f"busy_timeout={busy!r} in {mask(uri)}: expected ms") from None
        database = url.database or ""
        address.memory = database in ("", ":memory:")
        if not address.memory:
            # Resolve a relative path now, so a later chdir cannot move the store.
            address.path = os.path.abspath(database)
            address.url = address.url.set(database=address.path)
        address.lock = threading.RLock() if address.memory else None
    return address


def _sqlalchemy_userinfo(authority: Authority) -> str:
    """User info as SQLAlchemy parses it: it splits at the first ``@``, so quote the rest.

    ``%`` stays as it is: a password already %-encoded (SQLAlchemy's convention) still
    means what it meant.
    """
    if authority.user is None:
        return ""
    user = urllib.parse.quote(authority.user, safe="%")
    if authority.password is None:
        return f"{user}@"
    return f"{user}:{urllib.parse.quote(authority.password, safe='%')}@"


def mask(uri: str | URL) -> str:
    """The URI with its password hidden."""
    if isinstance(uri, URL):
        return uri.render_as_string(hide_password=True)
    return mask_password(uri)


def create_engine(address: StoreAddress) -> Engine:
    """Create the engine with every setting for its database; MissingDriverError if needed."""
    name = address.backend_name
    kwargs: dict[str, Any] = {"pool_pre_ping": name != "sqlite"}
    connect_args: dict[str, Any] = {}
    if name == "sqlite":
        # Python's sqlite3 would BEGIN implicitly before DML; we issue BEGIN IMMEDIATE
        # ourselves (see backend), so the driver runs in autocommit mode.
        connect_args.update(isolation_level=None, check_same_thread=False)
        connect_args["timeout"] = address.busy_timeout_ms / 1000
        if address.memory:
            kwargs["poolclass"] = StaticPool  # one shared in-memory database
    elif name == "postgresql":
        kwargs.update(isolation_level=SERVER_ISOLATION, pool_recycle=POOL_RECYCLE_SECONDS)
        if address.url.get_driver_name() in ("psycopg", "psycopg2"):
            connect_args.update(connect_timeout=CONNECT_TIMEOUT, application_name="ledgerflow")
    else:
        kwargs.update(isolation_level=SERVER_ISOLATION, pool_recycle=POOL_RECYCLE_SECONDS)
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
        if address.url.get_driver_name() == "pymysql":
            connect_args["max_allowed_packet"] = MYSQL_CLIENT_MAX_PACKET
            _check_pymysql_charset(address)
        if "charset" not in address.url.query:
            connect_args["charset"] = "utf8mb4"  # 4-byte UTF-8: emoji and all
    try:
        with warnings.catch_warnings():
            # SQLAlchemy warns about, then drops, URI options the driver ignores:
            # a typo in a URI is an error, not a warning on stderr.
            warnings.simplefilter("error", exc.SAWarning)
            engine = sa.create_engine(address.url, connect_args=connect_args, **kwargs)
    except ImportError as error:
        raise _missing_driver(address, error) from error
    except exc.NoSuchModuleError as error:  # e.g. postgresql+nodriver://
        from ledgerflow.persistence.registry import available_schemes

        raise BackendNotFound(
            f"SQLAlchemy knows no {address.url.drivername!r} driver (scheme of "
            f"{mask(address.url)}); installed schemes: {', '.join(available_schemes())}"
        ) from error
    except exc.SAWarning as warning:
        reason = str(warning).split(";")[0].replace(" and are being ignored", "")
        raise ValueError(
            f"unknown option for the {name} store at {address.where}: {reason}"
        ) from None
    _check_driver_options(engine, address)
    if name == "sqlite":
        _install_sqlite_pragmas(engine, address)
    return engine


def _check_pymysql_charset(address: StoreAddress) -> None:
    """ValueError for a ?charset= PyMySQL does not know (it would fail with AttributeError)."""
    charset = address.url.query.get("charset")
    if charset is None:
        return
    try:
        from pymysql.charset import charset_by_name
    except ImportError:  # reported as a missing driver when the engine is created
        return
    if not isinstance(charset, str) or charset_by_name(charset) is None:
        raise ValueError(
            f"unknown charset {charset!r} for the {address.backend_name} store at "
            f"{address.where}; leave it out (utf8mb4 is the default) or name a MySQL "
            "character set, e.g. charset=utf8mb4"
        )


def _check_driver_options(engine: Engine, address: StoreAddress) -> None:
    """ValueError now for URI options the driver's connect() would refuse at first use."""
    connect = getattr(engine.dialect.loaded_dbapi, "connect", None)
    try:
        signature = inspect.signature(connect) if connect is not None else None
    except (TypeError, ValueError):  # a C function without a signature
        return
    if signature is None:
        return
    args, params = engine.dialect.create_connect_args(engine.url)
    try:
        signature.bind(*args, **params)
    except TypeError as error:
        raise ValueError(
            f"unknown option for the {address.backend_name} store at {address.where}: {error}"
        ) from None


SQLITE_WAL: Final = "PRAGMA journal_mode = WAL"


def _install_sqlite_pragmas(engine: Engine, address: StoreAddress) -> None:
    pragmas = [
        f"PRAGMA busy_timeout = {address.busy_timeout_ms}",
        "PRAGMA foreign_keys = ON",  # off by default in SQLite: ON DELETE CASCADE needs it
        f"PRAGMA synchronous = {address.synchronous.upper()}",
    ]

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            # WAL: readers never block the writer; with synchronous=FULL each commit is
            # fsynced.  Switching an empty file to WAL writes its header, and reading
            # must never write (API.md), so an empty file gets WAL from upgrade().
            if not address.memory and cursor.execute("PRAGMA page_count").fetchone()[0]:
                cursor.execute(SQLITE_WAL)
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()


def _missing_driver(address: StoreAddress, error: ImportError) -> MissingDriverError:
    name = address.backend_name
    driver = address.url.get_driver_name()
    extra = EXTRAS.get(name)
    hint = f"pip install 'ledgerflow[{extra}]'" if extra else "install it"
    if extra and driver not in ("psycopg", "pymysql"):
        hint = f"install {driver}, or use the default driver: {hint}"
    return MissingDriverError(f"the {name} driver {driver!r} is not installed ({error}); {hint}")


# ---- error translation ----------------------------------------------------------------
#: Large statements MySQL refused: "packet bigger than max_allowed_packet" (1153) or,
#: as the server often just drops the connection, "gone away"/"lost connection".
_MYSQL_PACKET_ERRORS: Final = {1153, 2006, 2013}
#: Statements with parameters above this size may have hit max_allowed_packet.
_LARGE_PARAMETERS: Final = 1 << 20


def _parameter_size(params: Any) -> int:
    if isinstance(params, dict):
        return sum(len(v) for v in params.values() if isinstance(v, str | bytes))
    if isinstance(params, list | tuple):
        return sum(_parameter_size(p) for p in params)
    return 0


def _is_too_large(error: exc.DBAPIError) -> bool:
    args = getattr(error.orig, "args", ())
    code = args[0] if args and isinstance(args[0], int) else None
    if code == 1153 or "max_allowed_packet" in str(error.orig):
        return True
    return code in _MYSQL_PACKET_ERRORS and _parameter_size(error.params) > _LARGE_PARAMETERS


def _too_large_in_chain(error: BaseException) -> exc.DBAPIError | None:
    """The statement MySQL refused as too large, even if a failed rollback hid it."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, exc.DBAPIError) and _is_too_large(current):
            return current
        current = current.__context__
    return None


@contextlib.contextmanager
def translate_errors(address: StoreAddress, action: str) -> Iterator[None]:
    """Turn driver errors into ledgerflow's, once, at the backend boundary.

    A driver may quote its connection string: no message carries the password.
    """
    try:
        with _translate(address, action):
            yield
    except LedgerflowError as error:
        secret = address.url.password
        if secret and error.args and isinstance(error.args[0], str):
            error.args = (hide_secret(error.args[0], str(secret)), *error.args[1:])
        raise


@contextlib.contextmanager
def _translate(address: StoreAddress, action: str) -> Iterator[None]:
    try:
        yield
    except LedgerflowError:
        raise
    except UnicodeEncodeError as error:  # a name with a lone surrogate: no UTF-8 for it
        raise SerializationError(f"{action}: a text value is not valid UTF-8 ({error})") from error
    except exc.IntegrityError as error:
        raise _integrity_error(address, action, error) from _driver_error(error)
    except exc.DBAPIError as error:
        too_large = _too_large_in_chain(error) if address.backend_name != "postgresql" else None
        if too_large is not None:
            raise StorageError(
                f"{action}: a value is larger than the server's max_allowed_packet at "
                f"{address.where}; raise it (SET GLOBAL max_allowed_packet=268435456, or "
                f"max_allowed_packet=256M under [mysqld]) ({_first_line(too_large)})"
            ) from _driver_error(too_large)
        raise _storage_error(address, action, error) from _driver_error(error)
    except exc.SQLAlchemyError as error:
        raise StorageError(
            f"{action} failed on {address.where}: {_first_line(error)}"
        ) from _driver_error(error)
    except sqlite3.Error as error:  # raised by statements we send to the driver directly
        raise _storage_error(address, action, error) from error
    except OSError as error:
        raise StorageError(f"{action} failed on {address.where}: {error}") from _driver_error(error)


#: Driver codes of a uniqueness violation (the one IntegrityError that is a race) and
#: of a missing parent row, per driver: sqlite3 error names, SQLSTATEs, MySQL numbers.
_UNIQUE: Final = frozenset(
    {"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY", "23505", 1062}
)
_NO_PARENT: Final = frozenset({"SQLITE_CONSTRAINT_FOREIGNKEY", "23503", 1452, 1216})


def _integrity_error(address: StoreAddress, action: str, error: exc.IntegrityError) -> Exception:
    """A uniqueness race is a ConflictError; a vanished parent NotFound; else the store refused."""
    codes = _driver_codes(error)
    if codes & _UNIQUE:
        return ConflictError(f"{action}: a record was written concurrently ({_first_line(error)})")
    if codes & _NO_PARENT:
        return NotFound(
            f"{action}: the logbook or flow detail a record belongs to no longer exists "
            f"({_first_line(error)})"
        )
    return StorageError(
        f"{action}: the store at {address.where} refused a record ({_first_line(error)})"
    )


def _storage_error(address: StoreAddress, action: str, error: BaseException) -> StorageError:
    """The StorageError whose words fit what the driver reported."""
    if _is_corrupt(error):
        return corrupt_store(address.where, error)
    for words in (_sqlite_words, _login_words):
        message = words(address, error)
        if message is not None:
            return StorageError(f"{action}: {message}")
    if isinstance(error, exc.DBAPIError) and (
        error.connection_invalidated or _is_connect_error(error)
    ):
        target = (
            f"open the SQLite {address.where}"
            if address.backend_name == "sqlite"
            else f"reach the {address.backend_name} server at {address.where}"
        )
        return StorageError(f"cannot {target}: {_first_line(error)}")
    return StorageError(f"{action} failed on {address.where}: {_first_line(error)}")


def _login_words(address: StoreAddress, error: BaseException) -> str | None:
    """A server that answered but refused the database, the role or the password."""
    if address.backend_name == "sqlite":
        return None
    text = _first_line(error)
    server = f"the {address.backend_name} server at {address.where.split(' ', 1)[0]}"
    codes = _driver_codes(error)
    database, user = address.url.database, address.url.username
    if 1049 in codes or ("does not exist" in text and "database" in text):
        return (
            f"{server} has no database {database!r}; create it (CREATE DATABASE) "
            f"or fix the URI ({text})"
        )
    if "role" in text and "does not exist" in text:
        return f"{server} has no role {user!r}; create it or fix the URI's user ({text})"
    if codes & {1044, 1045, 1698} or "password authentication failed" in text:
        return f"{server} refused user {user!r}: check the URI's user and password ({text})"
    return None


def _is_connect_error(error: exc.DBAPIError) -> bool:
    """Whether the error happened while opening a connection (no statement ran)."""
    return error.statement is None and isinstance(error, exc.OperationalError)
