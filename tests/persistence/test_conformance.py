"""The backend contract suite, run against every built-in backend."""

from ledgerflow.testing import BackendConformance


class TestConformance(BackendConformance):
    """Uses the ``backend`` fixture of tests/conftest.py (all five backends)."""
