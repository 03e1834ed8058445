"""A backend opened on a store that another backend already upgraded works at once."""

import pytest

import ledgerflow as lf


# memory:// is left out: a memory store cannot be reopened by a second backend
@pytest.mark.parametrize("backend_kind", ["sqlite", "file", "postgresql", "mysql"])
def test_new_backend_on_upgraded_store_writes_first_time(backend: lf.Backend) -> None:
    second = lf.open_backend(backend.uri)
    try:
        with second.connect() as conn:
            book = conn.save_logbook(lf.LogBook("first write"))
            assert conn.get_logbook(book.uuid).name == "first write"
    finally:
        second.close()
