"""Argument checks shared by the public functions: each names the argument, the bad value and what it must be.

A value of the wrong kind (a string, None, a bool for a number) raises TypeError; a value of the right kind
outside its range (NaN, infinite, negative, too large) raises ValueError.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

MAX_ROWS = 10_000_000  # simulated points: far beyond any chapter, and well inside the memory of a laptop


def number(name: str, value, *, positive: bool = False, at_least: float | None = None) -> float:
    """`value` as a finite float; with `positive` it must be > 0, with `at_least` >= that bound."""
    if isinstance(value, np.ndarray) and value.ndim == 0:  # how Bambi stores a prior's arguments
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if at_least is not None and not value >= at_least:
        raise ValueError(f"{name} must be >= {at_least}, got {value!r}")
    return value


def whole_number(name: str, value, *, minimum: int = 1, maximum: int | None = None) -> int:
    """`value` as an int in [minimum, maximum]: 3 and 3.0 pass, 2.5, "3", None and True do not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a whole number, got {value!r} ({type(value).__name__})")
    if not np.isfinite(value) or int(value) != value:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum:,}" if maximum is not None else ""
        raise ValueError(f"{name} must be a whole number >= {minimum}{upper}, got {value!r}")
    return int(value)


def probability(name: str, value) -> float:
    """A probability strictly between 0 and 1 (the coverage of an interval)."""
    value = number(name, value)
    if not 0 < value < 1:
        raise ValueError(f"{name} must be strictly between 0 and 1 (0.94 for a 94% interval), got {value!r}")
    return value


def frame(name: str, data, columns: list[str]) -> pd.DataFrame:
    """A non-empty DataFrame holding `columns`, the numeric ones finite."""
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(data).__name__}")
    missing = [column for column in columns if column not in data.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing} (it has {list(data.columns)})")
    if data.empty:
        raise ValueError(f"{name} has no rows")
    return data


def finite_column(name: str, data: pd.DataFrame, column: str) -> np.ndarray:
    """A numeric column with no missing or infinite values, as floats."""
    values = data[column]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise TypeError(f"{name}[{column!r}] must be numeric, got dtype {values.dtype}")
    values = values.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        first = int(np.argmin(np.isfinite(values)))
        raise ValueError(f"{name}[{column!r}] has a missing or infinite value (position {first}): {values[first]}")
    return values


def array(name: str, values, *, positive: bool = False) -> np.ndarray:
    """A number or array of numbers (not strings or bools), all finite, and with `positive` all > 0."""
    if np.asarray(values).dtype.kind not in "iuf":
        raise TypeError(f"{name} must be numbers, got {values!r}")
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must be finite, got {values!r}")
    if positive and not (values > 0).all():
        raise ValueError(f"{name} must be positive, got {values!r}")
    return values


def slope_groups(statistics: pd.DataFrame, minimum_points: int) -> None:
    """Each group of `shrinkage.sufficient_statistics` has an identified slope (x not all zero), at least
    `minimum_points` points, and values small enough to compute with."""
    values = statistics[["sum_x_squared", "slope", "rss"]].to_numpy(float)
    unidentified = ~(np.isfinite(values[:, 0]) & (values[:, 0] > 0))
    too_few = statistics["n"].to_numpy() < minimum_points
    too_large = ~np.isfinite(values[:, 1:]).all(axis=1)
    bad = np.flatnonzero(unidentified | too_few | too_large)
    if not bad.size:
        return
    first, name = bad[0], statistics.index[bad[0]]
    if unidentified[first]:
        raise ValueError(f"data: x is all zero (or overflows) in group {name!r}, so its slope is not identified")
    if too_few[first]:
        count = int(statistics["n"].iloc[first])
        raise ValueError(f"data: group {name!r} has {count} point; each group needs {minimum_points} or more")
    raise ValueError(f"data: the values in group {name!r} are too large to compute with; rescale them")
