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
"""

from ledgerflow.testing.conformance import BackendConformance

__all__ = ["BackendConformance"]
