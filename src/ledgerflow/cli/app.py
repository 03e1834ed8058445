"""The ``ledgerflow`` command group: global options, backend opening, error translation.

Every library error becomes one line on stderr and an exit code (2 for bad input
the user can fix on the command line, 1 for everything else); ``--debug`` lets
the original exception and its traceback through instead.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import click
from rich.console import Console

import ledgerflow as lf
from ledgerflow.persistence.uri import base_scheme, local_path, mask_password, redact

DEFAULT_BACKEND = "sqlite:///ledgerflow.db"
BACKEND_ENV = "LEDGERFLOW_BACKEND"

#: Exit codes (click's convention: 2 is a usage error).
EXIT_FAILURE = 1
EXIT_USAGE = 2

#: Errors the user fixes by typing something else, checked in order (most derived first).
_USAGE_ERRORS: tuple[type[BaseException], ...] = (
    lf.BackendNotFound,
    lf.InvalidUUIDError,
)


class CLIError(click.ClickException):
    """A failure reported as ``Error: <one line>``; exit code 1."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class CLIUsageError(CLIError):
    """Bad input the user can fix on the command line; exit code 2."""

    exit_code = EXIT_USAGE


def cli_error(message: str, exit_code: int) -> CLIError:
    """A CLIError for ``exit_code`` (1 or 2)."""
    return CLIUsageError(message) if exit_code == EXIT_USAGE else CLIError(message)


def one_line(text: str, limit: int = 400) -> str:
    """Collapse whitespace (newlines included) and cap the length of a message."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def describe(exc: BaseException) -> str:
    """The message for ``exc``, plus its driver cause when the message lacks it."""
    message = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if isinstance(exc, lf.StorageError) and cause is not None:
        # SQLAlchemy wraps the driver's exception in .orig; compare against that text.
        driver = getattr(cause, "orig", None) or cause
        cause_text = one_line(str(driver), 200)
        if cause_text and cause_text[:40] not in one_line(message, 10_000):
            message = f"{message} ({type(driver).__name__}: {cause_text})"
    if not isinstance(exc, lf.LedgerflowError | OSError):
        message = f"{type(exc).__name__}: {message}"
    return message


def translate(exc: Exception) -> CLIError:
    """Map an exception to the CLIError the user sees."""
    if isinstance(exc, lf.NotFound):
        return CLIError(describe(exc))
    if isinstance(exc, _USAGE_ERRORS):
        return CLIUsageError(describe(exc))
    if isinstance(exc, lf.LedgerflowError | OSError):
        return CLIError(describe(exc))
    return CLIError(f"unexpected error: {describe(exc)} (run with --debug for the traceback)")


@dataclass
class App:
    """What every command needs: the backend URI, the debug flag and the consoles."""

    backend_uri: str
    debug: bool
    out: Console
    err: Console

    @property
    def safe_uri(self) -> str:
        """The backend URI with its password masked."""
        return mask_password(self.backend_uri)

    def open(self, uri: str | None = None) -> lf.Backend:
        """Open the backend for ``uri`` (the global one by default)."""
        return open_uri(uri or self.backend_uri)

    @contextlib.contextmanager
    def connect(self, uri: str | None = None) -> Iterator[lf.Connection]:
        """Open a backend and a connection, closing both afterwards."""
        with self.open(uri) as backend, backend.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def read(self, uri: str | None = None) -> Iterator[lf.Connection]:
        """A connection for a command that only reads (see ``open_reader``)."""
        with open_reader(uri or self.backend_uri) as backend, backend.connect() as conn:
            yield conn


def open_uri(uri: str) -> lf.Backend:
    """``lf.open_backend(uri)``; a URI option it rejects is a usage error."""
    try:
        return lf.open_backend(uri)
    except ValueError as exc:
        if isinstance(exc, lf.LedgerflowError):
            raise
        message = redact(str(exc), uri)
        if mask_password(uri) not in message:  # e.g. SQLAlchemy names only the bad part
            message = f"bad backend URI {mask_password(uri)!r}: {message}"
        raise CLIUsageError(message) from exc


def open_reader(uri: str) -> lf.Backend:
    """A backend for reading only: a local SQLite file through the stdlib reader.

    The reader runs the same queries without importing SQLAlchemy (most of a reading
    command's start-up); any other URI opens as ``open_uri`` opens it.
    """
    from ledgerflow.persistence.sql.reader import sqlite_reader

    return sqlite_reader(uri) or open_uri(uri)


def local_store_missing(uri: str) -> bool:
    """Tell whether ``uri`` names a local SQLite file or file-store directory that is absent.

    Reading commands check this first so they never bring a store into existence
    (opening a missing SQLite file would create it).  The URI is still checked
    (opening a backend creates nothing), so a bad one is an error, not "missing".
    """
    open_reader(uri).close()
    path = local_path(uri) if base_scheme(uri) in ("sqlite", "file") else None
    return path is not None and not path.exists()


def has_records(conn: lf.Connection) -> bool:
    """Whether a store may hold books: False when it has no schema yet (nothing to read).

    A store whose schema needs ``upgrade`` (or was written by a newer ledgerflow)
    and holds books raises its SchemaVersionError, so a reading command says so.
    """
    try:
        conn.validate()
    except lf.SchemaVersionError:
        if conn.count_logbooks() == 0:
            return False
        raise
    return True


def fail(message: str, exit_code: int = EXIT_FAILURE) -> NoReturn:
    """Stop the command with one error line."""
    raise cli_error(message, exit_code)


def one_line_usage(error: click.UsageError) -> CLIUsageError:
    """Click's usage error as one line (click would print the usage and a hint first)."""
    message = error.format_message()
    if error.ctx is not None:
        message = f"{message} (see '{error.ctx.command_path} --help')"
    return CLIUsageError(message)


class LedgerflowGroup(click.Group):
    """A group that turns exceptions from its commands into one-line errors.

    ``lazy_commands`` (name -> "module:attribute") are imported on first use.
    """

    def __init__(self, *args: Any, lazy_commands: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, loaded or not, sorted."""
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``, importing its module the first time."""
        target = self.lazy_commands.get(cmd_name)
        if target is not None and cmd_name not in self.commands:
            module, _, attribute = target.partition(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command), target
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the global options; a bad one is a one-line usage error."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise one_line_usage(exc) from exc

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; translate failures unless --debug is on."""
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise one_line_usage(exc) from exc
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            error = translate(exc)
            uri = ctx.params.get("backend_uri")
            if isinstance(uri, str):  # a driver's own text may quote the connection string
                error = cli_error(redact(error.message, uri), error.exit_code)
            raise error from exc
