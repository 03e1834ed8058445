"""Tasks: the units of work a flow runs, in subclass form or made by ``@task``.

A task declares what it needs through the parameters of ``execute`` (renamed by
``rebind``; parameters with defaults are optional) and what it gives through
``provides``.  ``revert`` undoes ``execute`` when the flow fails.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

__all__ = ["FunctionTask", "Retry", "Task", "task"]

_REVERT_RESERVED = frozenset({"result", "flow_failures"})

P = ParamSpec("P")
R = TypeVar("R")
_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Retry:
    """How often to try a task (or a subflow) and how long to wait between tries."""

    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"Retry attempts must be an integer >= 1, not {self.attempts!r}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("Retry backoff and max_backoff must not be negative")
        on = self.on if isinstance(self.on, tuple) else (self.on,)
        if not all(isinstance(c, type) and issubclass(c, BaseException) for c in on):
            raise ValueError(f"Retry on= must be exception classes, not {self.on!r}")
        object.__setattr__(self, "on", on)

    def delay(self, tries: int) -> float:
        """Seconds to wait before try ``tries + 1``, after ``tries`` failed tries."""
        return float(min(self.backoff * 2 ** (tries - 1), self.max_backoff))

    def should_retry(self, exc: BaseException, tries: int) -> bool:
        """Tell whether another try follows ``tries`` tries that ended with ``exc``."""
        return tries < self.attempts and isinstance(exc, self.on)


def _parameters(func: Callable[..., Any]) -> tuple[list[str], list[str], bool]:
    """Return (required names, optional names, takes **kwargs) of ``func``."""
    required: list[str] = []
    optional: list[str] = []
    var_kw = False
    for param in inspect.signature(func).parameters.values():
        if param.kind is param.VAR_KEYWORD:
            var_kw = True
        elif param.kind is param.VAR_POSITIONAL:
            continue
        elif param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"{func.__qualname__}: positional-only parameter {param.name!r}")
        elif param.default is param.empty:
            required.append(param.name)
        else:
            optional.append(param.name)
    return required, optional, var_kw


def _normalize_provides(provides: Any, owner: str) -> dict[str, Any]:
    """Map each provided symbol to how it is taken from the result (None = whole)."""
    if provides is None:
        return {}
    if isinstance(provides, str):
        pairs: list[tuple[Any, Any]] = [(provides, None)]
    elif isinstance(provides, Mapping):
        pairs = list(provides.items())
    elif isinstance(provides, Sequence):
        pairs = [(symbol, index) for index, symbol in enumerate(provides)]
    else:
        raise TypeError(
            f"task {owner!r}: provides must be None, a str, a tuple or list of str, or a "
            f"dict, not {type(provides).__name__}"
        )
    out: dict[str, Any] = {}
    for symbol, key in pairs:
        if not isinstance(symbol, str):
            raise TypeError(
                f"task {owner!r}: provides must name symbols with strings, not {symbol!r}"
            )
        if not symbol.strip():
            raise ValueError(f"task {owner!r}: provides names an empty symbol {symbol!r}")
        if symbol in out:
            raise ValueError(f"task {owner!r}: provides names the symbol {symbol!r} twice")
        out[symbol] = key
    return out


def _checked_name(name: Any) -> str:
    """``name`` if it is a usable task name; TypeError/ValueError naming the argument."""
    if not isinstance(name, str):
        raise TypeError(f"task name must be a string, not {type(name).__name__}: {name!r}")
    if not name.strip():
        raise ValueError(f"task name must not be empty or blank, got {name!r}")
    return name


def _check_timeout(value: object, name: str) -> float | None:
    """``value`` as a timeout in seconds (or None); ValueError naming the task otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"task {name!r}: timeout must be more than zero seconds, not {value!r}")
    if value == float("inf"):
        raise ValueError(f"task {name!r}: timeout must be finite, not {value!r} (use None)")
    return float(value)


class Task:
    """A unit of work: subclass and define ``execute`` (and optionally ``revert``)."""

    def __init__(
        self,
        name: str | None = None,
        provides: str | Sequence[str] | Mapping[str, Any] | None = None,
        requires: Iterable[str] | None = None,
        rebind: Mapping[str, str] | Sequence[str] | None = None,
        version: str | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> None:
        self.name = type(self).__qualname__ if name is None else _checked_name(name)
        self.version = str(version) if version is not None else "1.0"
        self.retry = retry
        #: Seconds a try may run before it fails with TaskTimeout (None: no limit).
        self.timeout = _check_timeout(timeout, self.name)
        self.provides_map = _normalize_provides(provides, self.name)
        #: provides=("a", "b") unpacks: the result must have exactly this many items.
        self.unpacks: int | None = (
            len(self.provides_map)
            if isinstance(provides, Sequence) and not isinstance(provides, str)
            else None
        )
        execute = self._execute_callable()
        #: execute() is ``async def``: the engine awaits it on an event loop.
        self.is_async = inspect.iscoroutinefunction(execute)
        self._bind(execute, rebind, requires)

    # ---- what a subclass writes ------------------------------------------------
    # ``*args: Any, **kwargs: Any``: a subclass declares the parameters it needs
    # (``def execute(self, image: str) -> str``) and still type-checks as an override.
    def execute(self, *args: Any, **inputs: Any) -> Any:
        """Do the work; the return value is the task's result (``async def`` works too)."""
        raise NotImplementedError(f"task {self.name!r} defines no execute()")

    def revert(self, *args: Any, **inputs: Any) -> Any:
        """Undo ``execute``: called with ``result=``, ``flow_failures=`` and the inputs it names.

        The default does nothing; ``async def`` works too.
        """

    # ---- engine-facing ---------------------------------------------------------
    @property
    def provides(self) -> tuple[str, ...]:
        """The symbols this task provides."""
        return tuple(self.provides_map)

    @property
    def requires(self) -> tuple[str, ...]:
        """The symbols this task needs (optional ones excluded)."""
        return tuple(self.required_args.values())

    @property
    def type_name(self) -> str:
        """Qualified name of the task's class (stored as the task detail's type)."""
        return f"{type(self).__module__}.{type(self).__qualname__}"

    def _execute_callable(self) -> Callable[..., Any]:
        return self.execute

    def _bind(
        self,
        func: Callable[..., Any],
        rebind: Mapping[str, str] | Sequence[str] | None,
        requires: Iterable[str] | None,
    ) -> None:
        required, optional, var_kw = _parameters(func)
        ordered = required + optional
        if isinstance(requires, str):
            requires = (requires,)  # one symbol, not its characters
        if isinstance(rebind, str):
            raise TypeError(
                f"task {self.name!r}: rebind must be a dict or a list of symbols, not {rebind!r}"
            )
        mapping: dict[str, str] = {}
        if isinstance(rebind, Mapping):
            unknown = [p for p in rebind if p not in ordered and not var_kw]
            if unknown:
                raise ValueError(f"task {self.name!r}: rebind names unknown parameters {unknown}")
            mapping = dict(rebind)
        elif rebind is not None:
            if len(rebind) > len(ordered):
                raise ValueError(f"task {self.name!r}: rebind has more names than parameters")
            mapping = dict(zip(ordered, rebind, strict=False))
        self.required_args = {p: mapping.get(p, p) for p in required}
        self.optional_args = {p: mapping.get(p, p) for p in optional}
        for param, symbol in mapping.items():
            if param not in self.required_args and param not in self.optional_args:
                self.required_args[param] = symbol  # extra kwargs for a **kwargs execute
        for symbol in requires or ():
            if symbol not in self.required_args.values():
                if not var_kw and symbol not in ordered:
                    raise ValueError(
                        f"task {self.name!r}: requires {symbol!r} but execute() takes no "
                        "such parameter or **kwargs"
                    )
                self.required_args[symbol] = symbol

    def extract(self, result: Any) -> dict[str, Any]:
        """Return the symbols this task provides, taken from ``result``."""
        if self.unpacks is not None and (
            not isinstance(result, (tuple, list)) or len(result) != self.unpacks
        ):
            got = (
                f"a {type(result).__name__} of {len(result)}"
                if isinstance(result, (tuple, list))
                else f"a {type(result).__name__}"
            )
            raise ValueError(
                f"task {self.name!r} provides {tuple(self.provides_map)}: its result must be "
                f"a tuple or list of {self.unpacks} values to unpack, not {got}"
            )
        out: dict[str, Any] = {}
        for symbol, key in self.provides_map.items():
            if key is None:
                out[symbol] = result
                continue
            try:
                out[symbol] = result[key]
            except (KeyError, IndexError, TypeError) as exc:
                raise ValueError(
                    f"task {self.name!r}: cannot take {symbol!r} from its result at {key!r}: "
                    f"{exc!r}"
                ) from exc
        return out

    def call_execute(self, inputs: Mapping[str, Any]) -> Any:
        """Run ``execute`` with ``inputs`` (parameter name -> value)."""
        return self.execute(**inputs)

    def call_revert(self, inputs: Mapping[str, Any], result: Any, flow_failures: Any) -> Any:
        """Run ``revert`` with the inputs it accepts; an async revert's coroutine is returned."""
        return _invoke_revert(self.revert, inputs, result, flow_failures)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} v{self.version}>"


class FunctionTask(Task, Generic[P, R]):
    """A task made from a function by ``@task``; calling it calls the function.

    Generic in the function's parameters and result, so a direct call type-checks
    against the function's own signature.
    """

    def __init__(
        self,
        func: Callable[P, R],
        name: str | None = None,
        provides: str | Sequence[str] | Mapping[str, Any] | None = None,
        requires: Iterable[str] | None = None,
        rebind: Mapping[str, str] | Sequence[str] | None = None,
        version: str | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> None:
        self.func = func
        self.revert_func: Callable[..., Any] | None = None
        functools.update_wrapper(self, func)
        super().__init__(
            func.__name__ if name is None else name,
            provides,
            requires,
            rebind,
            version,
            retry,
            timeout,
        )

    def _execute_callable(self) -> Callable[..., Any]:
        return self.func

    @property
    def type_name(self) -> str:
        """Qualified name of the decorated function (stored as the task detail's type)."""
        return f"{self.func.__module__}.{self.func.__qualname__}"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def call_execute(self, inputs: Mapping[str, Any]) -> Any:
        """Run the function with ``inputs``."""
        func: Callable[..., Any] = self.func
        return func(**inputs)

    def revert(self, func: _F | None = None, /, **kwargs: Any) -> _F:
        """Register ``func`` as this task's revert (``@my_task.revert``); returns it."""
        if func is None or kwargs or not callable(func):
            raise TypeError(f"use @{self.name}.revert as a decorator of a function")
        self.revert_func = func
        return func

    def call_revert(self, inputs: Mapping[str, Any], result: Any, flow_failures: Any) -> Any:
        """Run the registered revert function, if any; an async one's coroutine is returned."""
        if self.revert_func is None:
            return None
        return _invoke_revert(self.revert_func, inputs, result, flow_failures)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle by reference: the module attribute *is* this task, so a worker
        # process imports it instead of pickling the function (which pickle cannot).
        return (_import_task, (self.func.__module__, self.func.__qualname__))


def _invoke_revert(
    func: Callable[..., Any], inputs: Mapping[str, Any], result: Any, flow_failures: Any
) -> Any:
    """Call a revert with the execute inputs its signature accepts; return what it returns."""
    required, optional, var_kw = _parameters(func)
    accepted = set(required) | set(optional)
    args = inputs if var_kw else {k: v for k, v in inputs.items() if k in accepted}
    return func(result=result, flow_failures=flow_failures, **args)


def _import_task(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


@overload
def task(name: Callable[P, R], /) -> FunctionTask[P, R]: ...


@overload
def task(
    name: str | None = None,
    provides: str | Sequence[str] | Mapping[str, Any] | None = None,
    version: str = "1.0",
    rebind: Mapping[str, str] | Sequence[str] | None = None,
    retry: Retry | None = None,
    timeout: float | None = None,
    *,
    requires: Iterable[str] | None = None,
) -> Callable[[Callable[P, R]], FunctionTask[P, R]]: ...


def task(
    name: Callable[..., Any] | str | None = None,
    provides: str | Sequence[str] | Mapping[str, Any] | None = None,
    version: str = "1.0",
    rebind: Mapping[str, str] | Sequence[str] | None = None,
    retry: Retry | None = None,
    timeout: float | None = None,
    *,
    requires: Iterable[str] | None = None,
) -> FunctionTask[..., Any] | Callable[[Callable[..., Any]], FunctionTask[..., Any]]:
    """Turn a function into a Task: bare ``@task``, ``@task("name")``, ``@task(provides=...)``."""
    if callable(name):
        return FunctionTask(name, None, provides, requires, rebind, version, retry, timeout)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"task name must be a string, not {type(name).__name__}: {name!r}")
    task_name = name

    def wrap(f: Callable[..., Any]) -> FunctionTask[..., Any]:
        return FunctionTask(f, task_name, provides, requires, rebind, version, retry, timeout)

    return wrap
