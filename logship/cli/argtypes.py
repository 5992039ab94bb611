"""Argument types for the commands: numbers within bounds, refused with a message saying which."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def whole_number(low: int, high: int | None, what: str) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``low`` to ``high`` (None: no upper bound).

    Anything else is a usage error: ``"x is not WHAT"``.
    """

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text} is not {what}") from None
        if n < low or (high is not None and n > high):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return n

    return parse


def seconds(low: float, high: float) -> Callable[[str], float]:
    """An argparse ``type``: a number of seconds from ``low`` to ``high`` (nan refused)."""

    def parse(text: str) -> float:
        try:
            s = float(text)
        except ValueError:
            s = math.nan
        if not low <= s <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g} seconds")
        return s

    return parse
