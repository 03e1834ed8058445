"""Import a stored ``"package.module:attribute"`` path: the one place that does it.

A flow detail stores its factory as an import path so that a later process (often
``ledgerflow resume`` started from a shell) can rebuild the flow.  Like ``python -m``,
a module is also looked for in the working directory; unlike ``python -m``, the
working directory joins ``sys.path`` only for that one import and only after
everything else was searched, so a user's ``redis.py`` never shadows a real package.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from ledgerflow.errors import FactoryImportError

__all__ = ["import_path", "split_path"]


def split_path(path: str, what: str = "flow factory") -> tuple[str, str]:
    """``"module:attr.sub"`` as ``("module", "attr.sub")``; ValueError for another shape."""
    module_name, sep, attribute = path.partition(":") if isinstance(path, str) else ("", "", "")
    if not sep or not module_name or not attribute:
        raise ValueError(f"a {what} path looks like 'package.module:function', not {path!r}")
    return module_name, attribute


def import_path(path: str, what: str = "flow factory") -> Any:
    """The object ``path`` names; FactoryImportError naming it, the module and where it looked."""
    module_name, attribute = split_path(path, what)
    obj: Any = _import_module(module_name, path, what)
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = getattr(obj, "__file__", None) or getattr(obj, "__name__", repr(obj))
            raise FactoryImportError(
                f"cannot import {what} {path!r}: {where} has no attribute {part!r}"
            ) from None
    return obj


def _import_module(name: str, path: str, what: str) -> ModuleType:
    try:
        return _guarded_import(name, path, what)
    except ModuleNotFoundError as exc:
        if exc.name != name.split(".", 1)[0]:
            raise _missing(name, path, what, exc) from exc
    cwd = os.getcwd()
    if _on_sys_path(cwd):
        raise _missing(name, path, what, None)
    with _also_on_path(cwd):
        try:
            return _guarded_import(name, path, what)
        except ModuleNotFoundError as exc:
            raise _missing(name, path, what, exc) from exc


def _guarded_import(name: str, path: str, what: str) -> ModuleType:
    """Import ``name``; a failure other than the module being absent names the factory."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        raise
    except Exception as exc:
        raise FactoryImportError(
            f"cannot import {what} {path!r}: importing module {name!r} raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _missing(
    name: str, path: str, what: str, exc: ModuleNotFoundError | None
) -> FactoryImportError:
    if exc is not None and exc.name and not _names_itself(name, exc.name):
        return FactoryImportError(
            f"cannot import {what} {path!r}: module {name!r} needs module {exc.name!r}, "
            "which is not installed"
        )
    looked = [os.getcwd(), *(entry or os.getcwd() for entry in sys.path)]
    unique = list(dict.fromkeys(looked))
    return FactoryImportError(
        f"cannot import {what} {path!r}: no module named {name!r} in the working directory "
        f"{unique[0]} nor on sys.path ({os.pathsep.join(unique[1:])})"
    )


def _names_itself(name: str, missing: str) -> bool:
    """Whether the missing module is ``name`` or a package above it (not a dependency)."""
    return name == missing or name.startswith(missing + ".")


def _on_sys_path(directory: str) -> bool:
    real = os.path.realpath(directory)
    return any(os.path.realpath(entry or os.curdir) == real for entry in sys.path)


@contextmanager
def _also_on_path(directory: str) -> Iterator[None]:
    """``directory`` at the end of sys.path for the duration of the block."""
    sys.path.append(directory)
    try:
        yield
    finally:
        # The import may have edited sys.path itself: remove our entry, the last one.
        for index in range(len(sys.path) - 1, -1, -1):
            if sys.path[index] == directory:
                del sys.path[index]
                break
