"""Text helpers of the data-flow report: sizes, plurals, shapes, markdown tables.

Example:

>>> triple((2, 1, 3)), plural(2, "frame"), count(1234567)
('(2, 1, 3)', '2 frames', '1,234,567')
"""

from __future__ import annotations

from typing import Any


def triple(values) -> str:
    return "(" + ", ".join(str(v) for v in values) + ")"


def count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def plural(number: int, word: str) -> str:
    return f"{number} {word}" if number == 1 else f"{number} {word}s"


def extent(extent, input_size, sep: str = " × ") -> str:
    """`(frames, rows, features)` in words, marking axes that span the whole input."""
    frames, rows, features = extent
    parts = [
        plural(frames, "frame") + (" (whole window)" if frames == input_size[0] else ""),
        plural(rows, "individual") + (" (all)" if rows == input_size[1] > 1 else ""),
        plural(features, "feature") + (" (all)" if features == input_size[2] > 1 else ""),
    ]
    return sep.join(parts)


def ordinal(number: int) -> str:
    if number == 2:
        return "2nd"
    if number == 3:
        return "3rd"
    return f"{number}th"


def strided_frames(count: int, span: int, stride: int) -> str:
    """`8j, 8j+2, 8j+4, 8j+6`: the frames of one prediction, j = the unit's time index."""
    offsets = [i * stride for i in range(count)]
    terms = [f"{span}j" + (f"+{offset}" if offset else "") for offset in offsets]
    if len(terms) > 6:
        terms = terms[:3] + ["…"] + terms[-1:]
    return ", ".join(terms)


def shape(values) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"



def table(header: list[str], rows: list[list[Any]], align: str | None = None) -> list[str]:
    align = align or "l" * len(header)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines



def setting(value) -> str:
    if isinstance(value, list):
        if value and all(isinstance(item, list) for item in value):
            return ";".join(",".join(str(v) for v in item) for item in value)
        return ",".join(str(item) for item in value)
    return str(value)


def span(indices: list[int]) -> str:
    return str(indices[0]) if len(indices) == 1 else f"{indices[0]}–{indices[-1]}"



def plain(value):
    """Tuples → lists, recursively (JSON-compatible values)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def box(lines: list[str]) -> list[str]:
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    return [rule, *[f"| {line.ljust(width)} |" for line in lines], rule]

