"""The package's one form of a bad-value error: "name: value is invalid: rule".

Example:

>>> str(invalid("mask_ratio", 1.5, "must lie in [0, 1)"))
'mask_ratio: 1.5 is invalid: must lie in [0, 1)'
"""

from __future__ import annotations

from typing import Any


def invalid(parameter: str, value: Any, rule: str) -> ValueError:
    """The `ValueError` for `parameter` (a name or flag) holding `value`, against `rule`."""
    return ValueError(f"{parameter}: {value!r} is invalid: {rule}")
