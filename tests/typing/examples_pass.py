"""Code that must type-check under ``mypy --strict`` (tests/typing/test_mypy.py runs it)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any, assert_type

import ledgerflow as lf


@lf.task(provides="vm")
def create_vm(image: str, size: int = 1) -> str:
    return f"vm-{image}-{size}"


@create_vm.revert
def delete_vm(image: str, *, result: Any, flow_failures: Mapping[str, lf.Failure]) -> None:
    del image, result, flow_failures


@lf.task
def bare(count: int) -> list[int]:
    return list(range(count))


@lf.task(provides="page")
async def fetch(url: str) -> bytes:
    return url.encode()


class AttachIp(lf.Task):
    """A subclass declares exactly the parameters it needs."""

    def execute(self, vm: str) -> str:
        return f"{vm}/10.0.0.7"

    def revert(self, vm: str, *, result: Any, flow_failures: Any) -> None:
        del vm, result, flow_failures


class Download(lf.Task):
    async def execute(self, url: str) -> bytes:
        return url.encode()


assert_type(create_vm("debian"), str)
assert_type(create_vm("debian", size=2), str)
assert_type(bare(3), list[int])
pending = assert_type(fetch("https://x.test"), Coroutine[Any, Any, bytes])
pending.close()
undo: Callable[..., None] = delete_vm  # the revert decorator hands the function back


def build() -> lf.Flow:
    return lf.LinearFlow("boot", create_vm, AttachIp(provides="ip"), Download(name="dl"))


async def main() -> dict[str, Any]:
    lf.register_type(complex, lambda c: [c.real, c.imag], lambda v: complex(*v))
    return await lf.arun(build, store={"image": "debian", "url": "https://x.test"})
