"""Byte sizes as the runner's ``--memory-budget`` takes them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelrunner.bytesize import parse_bytes
from modelrunner.settings import Settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1048576", 1 << 20),
        ("8GiB", 8 << 30),
        ("8gib", 8 << 30),
        ("512MiB", 512 << 20),
        ("8GB", 8_000_000_000),
        ("1.5G", 1_500_000_000),
        (" 2 TiB ", 2 << 40),
        (4096, 4096),
    ],
)
def test_sizes(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "-1", "8 parsecs", "GiB", "1e9", -5, True])
def test_bad_sizes(text: str | int) -> None:
    with pytest.raises(ValueError):
        parse_bytes(text)


def test_settings_take_a_budget_with_units_and_refuse_nonsense() -> None:
    assert Settings(memory_budget="8GiB", listen=[]).memory_budget_bytes == 8 << 30
    assert Settings(listen=[]).memory_budget_bytes == 0
    with pytest.raises(ValidationError, match="invalid size"):
        Settings(memory_budget="lots", listen=[])
