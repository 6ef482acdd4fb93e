"""Small helpers shared by the typed configurations: building them from plain dicts and checking fields.

Every check raises a ``ValueError`` that names the field and the offending value, so bad input is caught
before any long work starts.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, TypeVar

T = TypeVar("T")


def from_dict(cls: type[T], values: dict[str, Any], *, where: str | None = None) -> T:
    """Build the dataclass ``cls`` from ``values``, rejecting keys it does not define.

    The reference implementation silently ignored unknown or dead keys (HDPO spec §11 R10); we name them.
    """
    if not isinstance(values, dict):
        raise ValueError(f"{where or cls.__name__}: expected a dict of fields, got {values!r}")
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; allowed keys are {sorted(known)}"
        )
    return cls(**values)


def check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_nonnegative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return float(value)


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Accept Python/NumPy integers (and integral floats such as 4.0 are rejected: be explicit)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value
