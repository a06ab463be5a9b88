"""Memory and disk sizes as people type them (`512M`, `1G`, `2048MB`) <-> whole megabytes."""

from __future__ import annotations

import re

from overcast.cli.errors import CliError

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?B?)\s*$", re.IGNORECASE)
# Binary multiples, as Cloud Foundry reads them: 1G = 1024M.
_BYTES_PER_UNIT = {
    "B": 1,
    "K": 1024,
    "M": 1024**2,
    "G": 1024**3,
    "T": 1024**4,
}
_MB = 1024**2


def parse_size_mb(text: str, *, what: str = "Size") -> int:
    """`512M` -> 512, `1g` -> 1024, `1TB` -> 1048576. A bare number is refused: `512` could
    mean bytes or megabytes, and guessing wrong by a factor of a million is no help."""
    if text.strip().isdigit():
        raise CliError(f"{what} '{text}' needs a unit, e.g. {text.strip()}M or 1G")
    match = _SIZE.match(text)
    if match is None or not match.group(2):
        raise CliError(
            f"{what} '{text}' is not a size: use a whole number followed by B, K, KB, M, MB, "
            "G, GB, T or TB (e.g. 512M, 1G)"
        )
    number, unit = int(match.group(1)), match.group(2).upper()
    size_bytes = number * _BYTES_PER_UNIT[unit[0]]
    if size_bytes % _MB or size_bytes == 0:
        raise CliError(f"{what} '{text}' must be a positive whole number of megabytes")
    return size_bytes // _MB


def format_mb(megabytes: int) -> str:
    """512 -> `512M`, 1024 -> `1G`; the form parse_size_mb reads back."""
    if megabytes >= 1024 and megabytes % 1024 == 0:
        return f"{megabytes // 1024}G"
    return f"{megabytes}M"
