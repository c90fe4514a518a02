"""DeepLabCut's column labels, as names and column grids (for its `.h5` and `.csv` readers).

A DeepLabCut table has one column per (scorer, individual, bodypart, coordinate), the
`individuals` level only in multi-animal files. movement's rule, kept here: individuals,
bodyparts and coordinates are named in the order they first appear; a single-animal file's
one individual is `individual_0`; the coordinates are x, y (and z), and `likelihood` when
the file has confidence scores. Every individual must have the same bodyparts.

Example:

>>> columns = [("me", "nose", "x"), ("me", "nose", "y"), ("me", "nose", "likelihood")]
>>> layout = deeplabcut_layout("a.csv", "DeepLabCut", columns, ["scorer", "bodyparts", "coords"])
>>> layout.individuals, layout.keypoints, layout.space
(('individual_0',), ('nose',), ('x', 'y'))
>>> layout.position_columns.tolist(), layout.score_columns.tolist()  # [I, K, S], [I, K]
([[[0, 1]]], [[2]])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from keras_hbehavemae.data.pose_io import cannot_read

SPACE = ("x", "y", "z")
SINGLE_INDIVIDUAL = "individual_0"


@dataclasses.dataclass(frozen=True)
class DeepLabCutLayout:
    """Names along I, K and S, and the column of each position `[I, K, S]` and score `[I, K]`
    (None: no `likelihood` columns)."""

    individuals: tuple[str, ...]
    keypoints: tuple[str, ...]
    space: tuple[str, ...]
    position_columns: np.ndarray
    score_columns: np.ndarray | None


def _first_appearance(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def deeplabcut_layout(where: str, software: str, columns: Sequence[tuple[str, ...]],
                      level_names: Sequence[str]) -> DeepLabCutLayout:
    """The layout of a table whose columns carry the labels `columns` (one tuple of
    `level_names` each). Raises ValueError naming `where` when it is not DeepLabCut's."""
    level = {name: index for index, name in enumerate(level_names)}
    if not {"bodyparts", "coords"} <= set(level):
        raise cannot_read(where, software, f"column levels {list(level_names)} lack "
                          "'bodyparts' and 'coords'")

    def individual(column):
        return column[level["individuals"]] if "individuals" in level else SINGLE_INDIVIDUAL

    individuals = _first_appearance([individual(column) for column in columns])
    keypoints = _first_appearance([column[level["bodyparts"]] for column in columns])
    coords = _first_appearance([column[level["coords"]] for column in columns])
    space = tuple(coord for coord in coords if coord != "likelihood")
    if space not in (SPACE[:2], SPACE):
        raise cannot_read(where, software, f"coords {list(coords)}: expected x, y (and z), "
                          "and optionally likelihood")
    index = {(individual(column), column[level["bodyparts"]], column[level["coords"]]): position
             for position, column in enumerate(columns)}
    expected = len(individuals) * len(keypoints) * len(coords)
    if len(index) != len(columns) or len(columns) != expected:
        raise cannot_read(where, software, f"{len(columns)} columns are not one per individual "
                          f"x bodypart x coordinate ({expected}); every individual must have "
                          "the same bodyparts")

    def grid(coordinates):
        return np.array([[[index[name, keypoint, coord] for coord in coordinates]
                          for keypoint in keypoints] for name in individuals])

    scores = grid(("likelihood",))[..., 0] if "likelihood" in coords else None
    return DeepLabCutLayout(individuals, keypoints, space, grid(space), scores)
