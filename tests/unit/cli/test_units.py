"""Memory and disk sizes: units required, binary multiples, whole megabytes."""

from __future__ import annotations

import pytest

from overcast.cli.errors import CliError
from overcast.cli.units import format_mb, parse_size_mb


@pytest.mark.parametrize(
    ("text", "megabytes"),
    [
        ("512M", 512),
        ("512m", 512),
        ("512MB", 512),
        ("512mb", 512),
        ("1G", 1024),
        ("1g", 1024),
        ("2GB", 2048),
        ("1T", 1024 * 1024),
        ("1tb", 1024 * 1024),
        ("1024K", 1),
        ("2048KB", 2),
        ("1048576B", 1),
        (" 256 M ", 256),
    ],
)
def test_sizes_with_units_become_megabytes(text: str, megabytes: int) -> None:
    assert parse_size_mb(text) == megabytes


def test_a_bare_number_is_refused_with_a_hint() -> None:
    with pytest.raises(CliError, match=r"needs a unit, e\.g\. 512M or 1G"):
        parse_size_mb("512", what="Memory")


@pytest.mark.parametrize("text", ["", "M", "1.5G", "-1G", "12X", "1 GiB", "G1"])
def test_malformed_sizes_are_refused(text: str) -> None:
    with pytest.raises(CliError, match="is not a size"):
        parse_size_mb(text)


@pytest.mark.parametrize("text", ["0M", "1000K", "12B"])
def test_sizes_that_are_not_whole_megabytes_are_refused(text: str) -> None:
    with pytest.raises(CliError, match="whole number of megabytes"):
        parse_size_mb(text)


@pytest.mark.parametrize(
    ("megabytes", "text"), [(512, "512M"), (1024, "1G"), (1536, "1536M"), (4096, "4G"), (1, "1M")]
)
def test_format_mb_reads_back(megabytes: int, text: str) -> None:
    assert format_mb(megabytes) == text
    assert parse_size_mb(text) == megabytes
