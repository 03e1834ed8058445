"""Test helpers for ledgerflow users and backend authors.

``BackendConformance`` is the contract suite every backend must pass.  A third-party
backend runs it by subclassing it in a pytest module and providing a ``backend``
fixture that yields an empty, upgraded store::

    from ledgerflow.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def backend(self, tmp_path):
            store = MyBackend(f"my://{tmp_path}")
            with store.connect() as conn:
                conn.upgrade()
            yield store
            store.close()

A board runs ``BoardConformance`` the same way, with a ``board`` fixture that yields an
empty board (``ledgerflow.testing.boards``).
"""

from ledgerflow.testing.conformance import BackendConformance

__all__ = ["BackendConformance", "BoardConformance"]


def __getattr__(name: str) -> object:
    # Imported on first use: the board suite pulls in the jobs package.
    if name == "BoardConformance":
        from ledgerflow.testing.boards import BoardConformance

        return BoardConformance
    raise AttributeError(name)
