"""URI -> backend, the entry-point group, and messages for bad URIs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ledgerflow as lf
from ledgerflow.persistence.memory import MemoryBackend
from ledgerflow.persistence.registry import scheme_of


def test_memory_uri_and_dict_forms() -> None:
    assert isinstance(lf.open_backend("memory://"), MemoryBackend)
    assert isinstance(lf.open_backend({"connection": "memory://"}), MemoryBackend)
    backend = MemoryBackend()
    assert lf.open_backend(backend) is backend


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("postgresql+psycopg2://u@h/db", "postgresql"),
        ("mysql+pymysql://u@h/db", "mysql"),
        ("sqlite:///x.db", "sqlite"),
        ("FILE:///tmp/x", "file"),
    ],
)
def test_scheme_of(uri: str, scheme: str) -> None:
    assert scheme_of(uri) == scheme


def test_unknown_scheme_lists_installed_schemes() -> None:
    with pytest.raises(lf.BackendNotFound) as info:
        lf.open_backend("nosuch://x")
    message = str(info.value)
    for scheme in ("memory", "sqlite", "postgresql", "mysql", "file"):
        assert scheme in message
    assert "memory" in lf.available_schemes()


@pytest.mark.parametrize("uri", ["postgresql+nodriver://u:pw@h/db", "mysql+nodriver://h/db"])
def test_an_unknown_sqlalchemy_driver_is_backend_not_found(uri: str) -> None:
    with pytest.raises(lf.BackendNotFound) as info:
        lf.open_backend(uri)
    assert "nodriver" in str(info.value) and "sqlite" in str(info.value)
    assert "pw" not in str(info.value)


@pytest.mark.parametrize("bad", ["not a uri", "", {"no": "connection"}])
def test_malformed_uri(bad: object) -> None:
    with pytest.raises(lf.BackendNotFound):
        lf.open_backend(bad)  # type: ignore[arg-type]


def test_third_party_backend_found_through_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "thirdparty_store.py").write_text(
        textwrap.dedent(
            """
            from ledgerflow.persistence.memory import MemoryBackend

            class ThirdPartyBackend(MemoryBackend):
                schemes = ("thirdparty",)
            """
        )
    )
    dist = tmp_path / "thirdparty_store-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-store\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[ledgerflow.backends]\nthirdparty = thirdparty_store:ThirdPartyBackend\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    backend = lf.open_backend("thirdparty://anything")
    assert type(backend).__name__ == "ThirdPartyBackend"
    assert backend.uri == "thirdparty://anything"
    assert "thirdparty" in lf.available_schemes()
    with backend.connect() as conn:
        conn.save_logbook(lf.LogBook("works"))
        assert [b.name for b in conn.get_logbooks()] == ["works"]


def test_import_ledgerflow_imports_no_driver() -> None:
    code = (
        "import sys, ledgerflow\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('psycopg', 'pymysql', 'psycopg2')]\n"
        "print(','.join(bad))\n"
    )
    src = str(Path(lf.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == ""


def test_password_is_masked_in_repr() -> None:
    backend = MemoryBackend("memory://user:s3cret@host/x")
    assert "s3cret" not in repr(backend)
    assert "***" in backend.safe_uri


def test_dict_options_mean_what_uri_options_mean(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'x.db'}"
    backend = lf.open_backend({"connection": uri, "synchronous": "normal"})
    with backend, backend.connect() as conn:
        conn.upgrade()
        conn.save_logbook(lf.LogBook("dict form"))
    with lf.open_backend(f"{uri}?synchronous=normal") as same, same.connect() as conn:
        assert [book.name for book in conn.get_logbooks()] == ["dict form"]
    with pytest.raises(ValueError, match="synchronous"):
        lf.open_backend({"connection": uri, "synchronous": "off"})
    with pytest.raises(ValueError, match="bogus"):
        lf.open_backend({"connection": uri, "bogus": 1})


@pytest.mark.parametrize("bad", [{"connection": "memory://", "bogus": 1}, "memory://?bogus=1"])
def test_memory_takes_no_options(bad: object) -> None:
    with pytest.raises(ValueError, match="bogus"):
        lf.open_backend(bad)  # type: ignore[arg-type]
