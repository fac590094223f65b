"""Kubernetes resource quantities (`250m`, `1.5Gi`, `2e3`) as exact decimals.

Follows the grammar of k8s.io/apimachinery `resource.Quantity`: a signed decimal number followed
by a binary SI suffix (Ki … Ei), a decimal SI suffix (n, u, m, "", k, M, G, T, P, E) or a decimal
exponent (`e3`, `E-2`). Decimals keep `0.1` exact, so ratios such as 1Gi / 100Mi compare without
float rounding.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
# The exponent alternative comes first: "1E3" is 1000, while a bare "1E" is one exa.
_QUANTITY_RE = re.compile(
    r"^(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))"
    r"(?:[eE](?P<exponent>[+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$"
)


def parse_quantity(value: str | float) -> Decimal:
    """Return the quantity's value in base units (cores, bytes); raise ValueError if malformed."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a Kubernetes quantity") from None
    match = _QUANTITY_RE.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 250m, 512Mi or 2")
    number = Decimal(match["number"])
    if match["exponent"] is not None:
        return number.scaleb(int(match["exponent"]))
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    return number * _DECIMAL[suffix]
