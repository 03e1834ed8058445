"""The ``ledgerflow`` command line: a thin client of the public API (see API.md)."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Sequence

import click
from rich.console import Console

from ledgerflow.cli.app import BACKEND_ENV, DEFAULT_BACKEND, App, LedgerflowGroup

__all__ = ["cli", "main"]

#: Command name -> the module defining it; a command's module is imported only when
#: that command runs (or help lists them all), so ``ledgerflow books`` does not import
#: the engine, the job boards or the web server.
COMMANDS: dict[str, str] = {
    "books": "ledgerflow.cli.commands:books",
    "flows": "ledgerflow.cli.flows:flows",
    "show": "ledgerflow.cli.commands:show",
    "resume": "ledgerflow.cli.run:resume",
    "suspend": "ledgerflow.cli.control:suspend",
    "cancel": "ledgerflow.cli.control:cancel",
    "upgrade": "ledgerflow.cli.commands:upgrade",
    "copy": "ledgerflow.cli.commands:copy",
    "web": "ledgerflow.cli.web:web",
    "demo": "ledgerflow.cli.demo:demo",
    "_demo-child": "ledgerflow.cli.demo:demo_child",
    "check": "ledgerflow.cli.care:check",
    "purge": "ledgerflow.cli.care:purge",
    "jobs": "ledgerflow.cli.jobs:jobs",
    "conductor": "ledgerflow.cli.jobs:conductor",
}


# no_args_is_help=False: a bare `ledgerflow` is bad input, one line on stderr (API.md).
@click.group(
    "ledgerflow",
    cls=LedgerflowGroup,
    lazy_commands=COMMANDS,
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
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="Log records of the 'ledgerflow' logger at this level and above to stderr "
    "(info: every flow and task start, end, retry and revert).",
)
@click.version_option(package_name="ledgerflow")
@click.pass_context
def cli(ctx: click.Context, backend_uri: str, debug: bool, log_level: str) -> None:
    """See into ledgerflow runs: list books and flows, show a run, resume it, copy stores."""
    configure_logging(log_level)
    ctx.obj = App(
        backend_uri=backend_uri,
        debug=debug,
        out=Console(highlight=False, markup=False, soft_wrap=True),
        err=Console(stderr=True, highlight=False, markup=False, soft_wrap=True),
    )


def configure_logging(level: str) -> None:
    """Send the ``ledgerflow`` logger's records at ``level`` and above to stderr."""
    logger = logging.getLogger("ledgerflow")
    logger.setLevel(level.upper())
    for old in [h for h in logger.handlers if getattr(h, "ledgerflow_cli", False)]:
        logger.removeHandler(old)  # an earlier in-process run's, bound to its stderr
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.ledgerflow_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``ledgerflow`` console script and ``python -m ledgerflow``."""
    for stream in (sys.stdout, sys.stderr):
        # A terminal or pipe that cannot encode a stored name gets an escape, not a crash.
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    cli.main(args=list(argv) if argv is not None else None, prog_name="ledgerflow")
