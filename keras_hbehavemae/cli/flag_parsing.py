"""Parsing of command-line values that absl cannot check itself: lists of numbers and paths.

Every error names the flag and the rule (`errors.invalid`), so a command prints one line
instead of Python's own "invalid literal for int()".

Example:

>>> integers("--seeds", ["41", "42"], minimum=0)
[41, 42]
>>> integers("--seeds", ["4x"])
Traceback (most recent call last):
...
ValueError: --seeds: ['4x'] is invalid: must be a comma-separated list of integers
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from keras_hbehavemae.errors import invalid


def integers(flag: str, values: Sequence[str], minimum: int | None = None) -> list[int]:
    """A non-empty list flag's values as integers (each at least `minimum`, if given)."""
    if not values:
        raise invalid(flag, list(values), "give at least one value")
    try:
        result = [int(value) for value in values]
    except ValueError:
        raise invalid(flag, list(values), "must be a comma-separated list of integers") from None
    if minimum is not None and min(result) < minimum:
        raise invalid(flag, list(values), f"every value must be at least {minimum}")
    return result


def positive_numbers(flag: str, values: Sequence[str]) -> list[float]:
    """A non-empty list flag's values as finite numbers > 0."""
    if not values:
        raise invalid(flag, list(values), "give at least one value")
    try:
        result = [float(value) for value in values]
    except ValueError:
        raise invalid(flag, list(values), "must be a comma-separated list of numbers") from None
    if not all(math.isfinite(value) and value > 0 for value in result):
        raise invalid(flag, list(values), "every value must be a finite number > 0")
    return result


def path(flag: str, value: str | None) -> str | None:
    """A path flag's value; an empty one (`--output_dir=`) is refused, None stays None."""
    if value is not None and not value.strip():
        raise invalid(flag, value, "must name a file or folder")
    return value
