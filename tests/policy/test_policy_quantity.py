"""Kubernetes quantity parsing, exact to the byte and millicore."""

from __future__ import annotations

from decimal import Decimal

import pytest

from policy.quantity import parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("250m", "0.25"),
        ("2", "2"),
        ("1.5", "1.5"),
        (".5", "0.5"),
        ("+3", "3"),
        ("100Mi", str(100 * 2**20)),
        ("1Gi", str(2**30)),
        ("1Ki", "1024"),
        ("2Ei", str(2 * 2**60)),
        ("1k", "1000"),
        ("1M", "1000000"),
        ("1G", "1000000000"),
        ("1E", "1000000000000000000"),
        ("1e3", "1000"),
        ("1E3", "1000"),
        ("5e-1", "0.5"),
        ("500u", "0.0005"),
        ("7n", "0.000000007"),
        (2, "2"),
        (0.5, "0.5"),
    ],
)
def test_parses(text: str | float, value: str) -> None:
    assert parse_quantity(text) == Decimal(value)


@pytest.mark.parametrize("text", ["", "1 core", "1Mb", "Gi", "1.2.3", "-", "1e", "1iB", True, None])
def test_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)  # type: ignore[arg-type]


def test_binary_and_decimal_suffixes_compare_exactly() -> None:
    assert parse_quantity("1Gi") / parse_quantity("1G") == Decimal("1.073741824")
    assert parse_quantity("1000m") == parse_quantity("1")
