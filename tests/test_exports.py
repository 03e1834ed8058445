"""``ledgerflow.__all__`` is exactly the public surface (httpx's exported-members test)."""

import importlib
import re
from pathlib import Path

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


DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _beyond_the_contract() -> str:
    return DOCS.read_text(encoding="utf-8").split("# Part 2 — beyond the contract", 1)[1]


def test_every_exported_name_is_documented_in_docs_api_md() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = [name for name in lf.__all__ if not re.search(rf"\b{re.escape(name)}\b", text)]
    assert not missing, f"docs/api.md does not mention {missing}"


def test_every_name_docs_api_md_adds_beyond_the_contract_is_exported() -> None:
    # "lf.Name" and "ledgerflow.module.Name" in part 2 must still exist, or the page lies.
    part = _beyond_the_contract()
    for name in set(re.findall(r"`(?:await )?lf\.([A-Za-z_]+)", part)):
        assert name in lf.__all__, f"docs/api.md lists lf.{name}, which is not exported"
    for module_name, name in set(re.findall(r"`ledgerflow\.([a-z_.]+)\.([A-Za-z_]+)", part)):
        module = importlib.import_module(f"ledgerflow.{module_name}")
        assert hasattr(module, name), f"docs/api.md lists ledgerflow.{module_name}.{name}"
