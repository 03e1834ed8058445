"""Code ``mypy --strict`` must refuse: a trailing "E:" comment names the error of its line."""

from __future__ import annotations

import ledgerflow as lf


@lf.task(provides="vm")
def create_vm(image: str) -> str:
    return f"vm-{image}"


@lf.task
async def fetch(url: str) -> bytes:
    return url.encode()


create_vm(123)  # E: Argument 1 to "__call__" of "FunctionTask" has incompatible type "int"
create_vm()  # E: Missing positional argument "image"
create_vm("a", "b")  # E: Too many arguments
count: int = create_vm("debian")  # E: Incompatible types in assignment
data: bytes = fetch("u")  # E: Incompatible types in assignment
lf.Retry(attempts="3")  # E: Argument "attempts" to "Retry" has incompatible type "str"
lf.LinearFlow("f", 3)  # E: Argument 2 to "LinearFlow" has incompatible type "int"
