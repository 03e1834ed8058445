"""The board contract on all five boards (the suite lives in ledgerflow.testing)."""

from ledgerflow.testing import BoardConformance


class TestBoards(BoardConformance):
    """Runs every check of ``BoardConformance`` against the ``board`` fixture."""
