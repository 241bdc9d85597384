"""One way to print a number everywhere in the report (and in its tests)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["format_number"]


def format_number(value: Any) -> str:
    """Integers with thousands separators; floats to 2 decimals from 1 up, 0 decimals from
    1,000, 3 significant digits below 1 (never an exponent); None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 1 or magnitude == 0:
            return f"{value:.2f}"
        return f"{value:.{2 - math.floor(math.log10(magnitude))}f}"  # 3 significant digits, no exponent
    return str(value)
