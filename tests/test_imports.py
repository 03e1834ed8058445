"""Importing stored factory paths: the working directory is searched last, and only then."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import ledgerflow as lf
from ledgerflow.imports import import_path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working directory that is not on sys.path; modules imported from it are dropped."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_a_module_in_the_working_directory_is_found_and_the_path_restored(workdir: Path) -> None:
    (workdir / "wt_jobs_a.py").write_text("def build():\n    return 'built'\n")
    path_before = list(sys.path)
    assert import_path("wt_jobs_a:build")() == "built"
    assert sys.path == path_before


def test_a_users_module_does_not_shadow_an_installed_one(workdir: Path) -> None:
    sys.modules.pop("colorsys", None)
    (workdir / "colorsys.py").write_text("SHADOW = True\n")
    (workdir / "wt_jobs_b.py").write_text("import colorsys\nWHICH = colorsys\n")
    which = import_path("wt_jobs_b:WHICH")
    assert not hasattr(which, "SHADOW")
    assert Path(which.__file__).parent != workdir


def test_a_missing_module_names_the_factory_and_where_it_looked(workdir: Path) -> None:
    with pytest.raises(lf.FactoryImportError) as caught:
        import_path("wt_nowhere:build")
    message = str(caught.value)
    assert "'wt_nowhere:build'" in message and "no module named 'wt_nowhere'" in message
    assert f"working directory {workdir}" in message
    assert sys.path[-1] in message
    assert isinstance(caught.value, ImportError)


def test_a_missing_dependency_is_named_as_such(workdir: Path) -> None:
    (workdir / "wt_jobs_c.py").write_text("import wt_not_installed_anywhere\n")
    with pytest.raises(lf.FactoryImportError, match="needs module 'wt_not_installed_anywhere'"):
        import_path("wt_jobs_c:build")


def test_a_missing_attribute_or_a_broken_module_names_the_factory(workdir: Path) -> None:
    (workdir / "wt_jobs_d.py").write_text("X = 1\n")
    with pytest.raises(lf.FactoryImportError, match=r"'wt_jobs_d:build'.* no attribute 'build'"):
        import_path("wt_jobs_d:build")
    (workdir / "wt_jobs_e.py").write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(lf.FactoryImportError, match="RuntimeError: boom at import"):
        import_path("wt_jobs_e:build")


def test_a_malformed_path_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"package\.module:function"):
        import_path("no-colon-here")
