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

import json
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


def join_published_forms(argv: Sequence[str], multi_value: Sequence[str],
                         boolean: Sequence[str],
                         semicolon_joined: Sequence[str] = ()) -> list[str]:
    """Rewrites the published argparse forms of a command line for absl.

    `--input_size 400 1 72` becomes `--input_size=400 1 72` (for the `multi_value` flags;
    the values of `semicolon_joined` ones are joined by ";", one triple per value), and
    `--norm_loss True` becomes `--norm_loss=True` (for the `boolean` flags).

    Example:

    >>> join_published_forms(["--input_size", "400", "1", "72", "--norm_loss", "True"],
    ...                      ["input_size"], ["norm_loss"])
    ['--input_size=400 1 72', '--norm_loss=True']
    """
    result, index = [], 0
    while index < len(argv):
        argument = argv[index]
        name = argument[2:] if argument.startswith("--") and "=" not in argument else None
        index += 1
        if name in multi_value:
            values = []
            while index < len(argv) and not argv[index].startswith("--"):
                values.append(argv[index])
                index += 1
            separator = ";" if name in semicolon_joined else " "
            result.append(f"--{name}={separator.join(values)}" if values else argument)
        elif (name in boolean and index < len(argv)
              and argv[index].lower() in ("true", "false")):
            result.append(f"--{name}={argv[index]}")
            index += 1
        else:
            result.append(argument)
    return result


def read_json_file(flag: str, path: str):
    """The content of the JSON file `path` that `flag` names; errors name the flag and file."""
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except FileNotFoundError:
        raise FileNotFoundError(f"{flag} {path!r}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{flag} {path!r}: not a readable JSON file ({error})") from None
