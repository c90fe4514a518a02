"""The package's forms of a bad-value error.

`invalid` is the one form of a bad value: "name: value is invalid: rule". `unknown_keys` is
the one form of a misspelled or foreign key (in a constructor's keywords, a `config.json`, a
checkpoint's `args`): it names every unknown key with the closest valid name.

Example:

>>> str(invalid("mask_ratio", 1.5, "must lie in [0, 1)"))
'mask_ratio: 1.5 is invalid: must lie in [0, 1)'
>>> str(unknown_keys("HBehaveMAEBackbone", ["init_num_head"], ["init_num_heads", "stages"]))
"HBehaveMAEBackbone: unknown key 'init_num_head' (did you mean 'init_num_heads'?)"
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


def invalid(parameter: str, value: Any, rule: str) -> ValueError:
    """The `ValueError` for `parameter` (a name or flag) holding `value`, against `rule`."""
    return ValueError(f"{parameter}: {value!r} is invalid: {rule}")


def closest_name(key: Any, valid: Iterable[str]) -> str | None:
    """The valid name closest to `key` (`difflib`), or None when nothing is close."""
    matches = difflib.get_close_matches(str(key), sorted(set(valid)), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_keys(where: str, unknown: Iterable[Any], valid: Iterable[str]) -> ValueError:
    """The `ValueError` for keys of `where` that are not among `valid`.

    Each unknown key is named with the closest valid name; without a close one, the message
    lists the valid names.
    """
    valid = sorted(set(valid))
    unknown = sorted({str(key) for key in unknown})
    parts, lost = [], False
    for key in unknown:
        match = closest_name(key, valid)
        lost = lost or match is None
        parts.append(f"{key!r}" + (f" (did you mean {match!r}?)" if match else ""))
    noun = "key" if len(unknown) == 1 else "keys"
    message = f"{where}: unknown {noun} {', '.join(parts)}"
    if lost:
        message += f"; valid keys: {', '.join(valid)}"
    return ValueError(message)


def check_known_keys(where: str, keys: Iterable[Any], valid: Iterable[str]) -> None:
    """Raises `unknown_keys(...)` if some of `keys` are not among `valid`."""
    valid = set(valid)
    unknown = [key for key in keys if key not in valid]
    if unknown:
        raise unknown_keys(where, unknown, valid)
