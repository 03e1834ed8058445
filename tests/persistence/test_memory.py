"""memory:// specifics: a failed transaction puts back exactly what it removed."""

import pytest

import ledgerflow as lf
from ledgerflow.persistence.memory import MemoryBackend
from ledgerflow.testing.conformance import make_book


def test_a_rolled_back_delete_restores_the_book_in_order() -> None:
    with MemoryBackend().connect() as conn:
        keep = conn.save_logbook(make_book("keep"))
        gone = conn.save_logbook(make_book("gone", flows=2, tasks=3))
        before = conn.get_logbook(gone.uuid).to_dict()
        with pytest.raises(RuntimeError), conn._transaction():
            assert conn._delete_book(gone.uuid)
            with pytest.raises(lf.NotFound):
                conn.get_logbook(gone.uuid)
            raise RuntimeError("abort")
        assert conn.get_logbook(gone.uuid).to_dict() == before
        assert conn.get_logbook(keep.uuid).to_dict() == keep.to_dict()
        assert conn.task_state_counts([gone.uuid]) == {gone.uuid: {lf.states.SUCCESS: 6}}
