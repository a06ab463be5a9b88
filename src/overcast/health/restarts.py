"""When a crashed instance is restarted: Diego's restart calculator (DESIGN.md section 7).

Pure functions of numbers: no clock and no random source. Times are Unix seconds passed in by the
caller, and the jitter takes its random value as an argument (`stable_rng_value` derives one
from a key, so a crash keeps the same restart time on every convergence pass).

The crash count is the number of consecutive crashes of one index, the latest included: a
replacement is a new instance whose cell counts from zero, so the caller carries the count
across replacements with `crash_count_after`.
"""

from __future__ import annotations

import zlib

from overcast.models.instances import CRASH_RESET_SECONDS

# The first crashes restart at once: a single crash is usually a fluke (a lost connection at
# boot), and waiting would only lengthen the outage.
IMMEDIATE_RESTARTS = 3
# The wait after the first crash past the immediate ones; it doubles with every further crash.
FIRST_BACKOFF_SECONDS = 30.0
# The longest nominal wait (16 minutes), so a crash-looping app still gets a try now and then.
MAX_BACKOFF_SECONDS = 16 * 60.0
# Restarts are spread by up to this fraction either way of the nominal wait, so apps that
# crashed together (a database outage) do not all come back in the same second.
JITTER_FRACTION = 0.1
# Doubling more often than this cannot matter (the cap is reached long before); it bounds the
# power so a huge crash count cannot overflow a float.
_MAX_DOUBLINGS = 64


def restart_delay(
    crash_count: int, *, rng_value: float, jitter_fraction: float = JITTER_FRACTION
) -> float:
    """Seconds from a crash to the restart of its index.

    0 for the first IMMEDIATE_RESTARTS crashes (no jitter: nothing to spread), then
    FIRST_BACKOFF_SECONDS doubling per further crash up to MAX_BACKOFF_SECONDS, scaled by a
    factor in [1 - jitter_fraction, 1 + jitter_fraction) picked by `rng_value` in [0, 1). The
    cap bounds the nominal wait; the jitter applies after it, so capped restarts spread too.
    """
    if crash_count < 0:
        raise ValueError(f"negative crash count {crash_count}")
    if not 0.0 <= rng_value < 1.0:
        raise ValueError(f"rng_value {rng_value} is not in [0, 1)")
    if not 0.0 <= jitter_fraction < 1.0:
        raise ValueError(f"jitter_fraction {jitter_fraction} is not in [0, 1)")
    if crash_count <= IMMEDIATE_RESTARTS:
        return 0.0
    doublings = min(crash_count - IMMEDIATE_RESTARTS - 1, _MAX_DOUBLINGS)
    nominal = min(FIRST_BACKOFF_SECONDS * 2.0**doublings, MAX_BACKOFF_SECONDS)
    return nominal * (1.0 + jitter_fraction * (2.0 * rng_value - 1.0))


def next_restart_at(
    crashed_at: float,
    crash_count: int,
    rng_value: float,
    *,
    jitter_fraction: float = JITTER_FRACTION,
) -> float:
    """The Unix time from which the crashed index may be started again."""
    return crashed_at + restart_delay(
        crash_count, rng_value=rng_value, jitter_fraction=jitter_fraction
    )


def crash_count_after(
    previous_count: int,
    *,
    running_since: float | None,
    crashed_at: float,
    droplet_changed: bool,
) -> int:
    """The index's crash count once this crash is counted.

    `previous_count` is the count before it, `running_since` when the crashed instance became
    RUNNING (None if it never did) and `droplet_changed` whether it ran another version than the
    crashes counted so far. The count starts again at 1 after CRASH_RESET_SECONDS of healthy
    running, and on a new droplet: the new code has not crashed before.
    """
    if previous_count < 0:
        raise ValueError(f"negative crash count {previous_count}")
    ran_healthy = running_since is not None and crashed_at - running_since >= CRASH_RESET_SECONDS
    if droplet_changed or ran_healthy:
        return 1
    return previous_count + 1


def stable_rng_value(key: str) -> float:
    """A value in [0, 1) fixed by `key` and spread evenly across keys.

    Keyed by instance and crash count, it gives each crash its own jitter that stays the same
    on every pass, so a waiting restart's time does not move between passes. CRC-32 rather than
    hash(), whose value for a str changes from one process to the next.
    """
    return zlib.crc32(key.encode()) / 2**32
