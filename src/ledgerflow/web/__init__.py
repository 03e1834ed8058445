"""``ledgerflow.web``: a read-only history view in the browser (``ledgerflow[web]``).

``create_app(backend, *, board=None)`` returns an ASGI app (Starlette): server-rendered
pages that work without JavaScript, a small script that refreshes a running flow's
page, and a JSON twin of every page under ``/api/``.  Only GET is served, and
nothing in the app writes to the store.
"""

from ledgerflow.web.app import create_app

__all__ = ["create_app"]
