"""A factory whose jobs carry a value of this module's own type (imported by conductors only)."""

from __future__ import annotations

import enum

import ledgerflow as lf


class Color(enum.Enum):
    """A type a stored value decodes to only once this module is imported."""

    RED = "red"


@lf.task(provides="decoded")
def paint(color: object) -> str:
    """What the stored ``color`` came back as."""
    return "Color" if isinstance(color, Color) else type(color).__name__


def painting() -> lf.Flow:
    """One task that tells what its store value decoded to."""
    return lf.LinearFlow("painting", paint)
