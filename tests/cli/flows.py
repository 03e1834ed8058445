"""A flow the resume tests rebuild from its import path (``tests.cli.flows:build``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ledgerflow as lf

FACTORY = "tests.cli.flows:build"


@lf.task(provides="order")
def take_order(item: str) -> dict[str, Any]:
    """Record the order."""
    return {"item": item, "qty": 2}


@lf.task(provides="receipt")
def charge(order: dict[str, Any], blocker: str) -> str:
    """Charge the order; fails while the file ``blocker`` exists."""
    if Path(blocker).exists():
        raise ConnectionError(f"payment gateway unreachable ({blocker} exists)")
    return f"receipt-{order['item']}-{order['qty']}"


def build() -> Any:
    """Return the two-step order flow."""
    return lf.LinearFlow("order", take_order, charge)
