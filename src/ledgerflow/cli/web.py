"""``ledgerflow web``: serve the read-only history view (``ledgerflow[web]``)."""

from __future__ import annotations

import errno
import socket

import click

from ledgerflow.cli.app import App, fail

__all__ = ["allowed_hosts", "web"]


@click.command()
@click.option(
    "--board",
    "board_uri",
    metavar="URI",
    envvar="LEDGERFLOW_BOARD",
    help="A job board to show under /jobs (or $LEDGERFLOW_BOARD).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.pass_obj
def web(app: App, board_uri: str | None, host: str, port: int) -> None:
    """Serve the books, flows and tasks of the store in a browser (read-only)."""
    try:
        import uvicorn

        from ledgerflow.web import create_app
    except ImportError as exc:
        fail(f"the web view needs its extra: pip install 'ledgerflow[web]' ({exc.name} is missing)")
    board = _open_board(board_uri, app.backend_uri) if board_uri else None
    listener = _listen(host, port)
    application = create_app(app.open(), board=board, allowed_hosts=allowed_hosts(host))
    bound = listener.getsockname()
    app.err.print(f"ledgerflow web: serving {app.safe_uri} on http://{bound[0]}:{bound[1]}/")
    config = uvicorn.Config(application, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[listener])


#: Names a browser uses for this machine's loopback address.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def allowed_hosts(host: str) -> list[str] | None:
    """Host headers to serve: only loopback names when bound to loopback, else any."""
    if host in LOOPBACK_NAMES or host.startswith("127."):
        return sorted({*LOOPBACK_NAMES, host})
    return None


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, or one clear line: a port in use is exit 1, never a traceback."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    family, kind, proto, _, address = infos[0]
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(128)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {port} on {host} is in use: pick another with --port")
        fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    return listener


def _open_board(uri: str, backend_uri: str) -> object:
    """The job board at ``uri`` over the view's backend, read-only (it creates nothing)."""
    import ledgerflow as lf

    return lf.open_board(uri, backend=None if uri == backend_uri else backend_uri, create=False)
