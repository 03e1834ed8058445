"""``ledgerflow.__all__`` is exactly the public surface (httpx's exported-members test)."""

import ledgerflow as lf


def test_all_matches_public_names() -> None:
    public = {name for name in dir(lf) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(lf, name)).__name__ == "module"}
    assert set(lf.__all__) == public - (modules - {"states"})


def test_every_error_derives_from_the_root() -> None:
    for name in (
        "MissingInputsError",
        "NotFound",
        "BackendNotFound",
        "StateTransitionError",
        "SerializationError",
        "VersionMismatchError",
        "ConflictError",
        "StorageError",
        "FlowFailed",
    ):
        assert issubclass(getattr(lf, name), lf.LedgerflowError), name
    assert issubclass(lf.NotFound, LookupError)
