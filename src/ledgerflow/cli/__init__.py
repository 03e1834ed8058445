"""The ``ledgerflow`` command line: a thin client of the public API (see API.md)."""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence

import click
from rich.console import Console

from ledgerflow.cli.app import BACKEND_ENV, DEFAULT_BACKEND, App, LedgerflowGroup
from ledgerflow.cli.commands import books, copy, show, upgrade
from ledgerflow.cli.control import cancel, suspend
from ledgerflow.cli.demo import demo, demo_child
from ledgerflow.cli.run import resume

__all__ = ["cli", "main"]


# no_args_is_help=False: a bare `ledgerflow` is bad input, one line on stderr (API.md).
@click.group(
    "ledgerflow",
    cls=LedgerflowGroup,
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--backend",
    "backend_uri",
    metavar="URI",
    envvar=BACKEND_ENV,
    default=DEFAULT_BACKEND,
    show_default=True,
    help=f"Where the logbooks live (or ${BACKEND_ENV}).",
)
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.version_option(package_name="ledgerflow")
@click.pass_context
def cli(ctx: click.Context, backend_uri: str, debug: bool) -> None:
    """See into ledgerflow runs: list books, show a run, resume it, copy stores."""
    ctx.obj = App(
        backend_uri=backend_uri,
        debug=debug,
        out=Console(highlight=False, markup=False, soft_wrap=True),
        err=Console(stderr=True, highlight=False, markup=False, soft_wrap=True),
    )


for _command in (books, show, resume, suspend, cancel, upgrade, copy, demo, demo_child):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``ledgerflow`` console script and ``python -m ledgerflow``."""
    for stream in (sys.stdout, sys.stderr):
        # A terminal or pipe that cannot encode a stored name gets an escape, not a crash.
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    cli.main(args=list(argv) if argv is not None else None, prog_name="ledgerflow")
