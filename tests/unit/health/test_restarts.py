"""The crash restart policy (health/restarts.py)."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overcast.health.restarts import (
    CRASH_RESET_SECONDS,
    IMMEDIATE_RESTARTS,
    MAX_BACKOFF_SECONDS,
    crash_count_after,
    next_restart_at,
    restart_delay,
    stable_rng_value,
)

# The middle of [0, 1): a jitter factor of exactly 1.
NO_JITTER = 0.5


@pytest.mark.parametrize(
    ("crash_count", "delay"),
    [
        (0, 0.0),
        (1, 0.0),
        (2, 0.0),
        (3, 0.0),
        (4, 30.0),
        (5, 60.0),
        (6, 120.0),
        (7, 240.0),
        (8, 480.0),
        (9, 960.0),
        (10, 960.0),
        (200, 960.0),
        (10**9, 960.0),
    ],
)
def test_three_immediate_restarts_then_30_s_doubling_to_16_minutes(
    crash_count: int, delay: float
) -> None:
    assert restart_delay(crash_count, rng_value=NO_JITTER) == delay


def test_the_constants_are_diegos() -> None:
    assert IMMEDIATE_RESTARTS == 3
    assert MAX_BACKOFF_SECONDS == 16 * 60
    assert CRASH_RESET_SECONDS == 5 * 60


def test_jitter_spreads_the_wait_either_way() -> None:
    assert restart_delay(5, rng_value=0.0, jitter_fraction=0.1) == pytest.approx(54.0)
    assert restart_delay(5, rng_value=0.75, jitter_fraction=0.1) == pytest.approx(63.0)
    assert restart_delay(5, rng_value=0.0, jitter_fraction=0.0) == 60.0


def test_immediate_restarts_have_no_jitter() -> None:
    assert restart_delay(IMMEDIATE_RESTARTS, rng_value=0.99) == 0.0


def test_the_cap_spreads_too() -> None:
    assert restart_delay(50, rng_value=0.0, jitter_fraction=0.1) == pytest.approx(864.0)


@pytest.mark.parametrize(
    ("crash_count", "rng_value", "jitter_fraction"),
    [(-1, 0.5, 0.1), (4, 1.0, 0.1), (4, -0.1, 0.1), (4, 0.5, 1.0), (4, 0.5, -0.1)],
)
def test_bad_arguments_are_refused(
    crash_count: int, rng_value: float, jitter_fraction: float
) -> None:
    with pytest.raises(ValueError):
        restart_delay(crash_count, rng_value=rng_value, jitter_fraction=jitter_fraction)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 400),
    st.floats(0.0, 1.0, exclude_max=True),
    st.floats(0.0, 0.5),
)
def test_delay_stays_within_the_jitter_of_a_non_decreasing_curve(
    crash_count: int, rng_value: float, jitter_fraction: float
) -> None:
    nominal = restart_delay(crash_count, rng_value=NO_JITTER, jitter_fraction=jitter_fraction)
    delay = restart_delay(crash_count, rng_value=rng_value, jitter_fraction=jitter_fraction)
    assert nominal * (1 - jitter_fraction) <= delay <= nominal * (1 + jitter_fraction)
    assert delay <= MAX_BACKOFF_SECONDS * (1 + jitter_fraction)
    assert restart_delay(crash_count + 1, rng_value=NO_JITTER) >= restart_delay(
        crash_count, rng_value=NO_JITTER
    )


def test_next_restart_at_adds_the_delay_to_the_crash_time() -> None:
    assert next_restart_at(1_000.0, 2, 0.3) == 1_000.0
    assert next_restart_at(1_000.0, 6, NO_JITTER) == 1_120.0
    assert next_restart_at(1_000.0, 6, 0.0, jitter_fraction=0.5) == 1_060.0


def test_each_crash_counts() -> None:
    assert crash_count_after(0, running_since=None, crashed_at=10.0, droplet_changed=False) == 1
    assert crash_count_after(4, running_since=5.0, crashed_at=10.0, droplet_changed=False) == 5


def test_the_count_resets_after_five_minutes_running() -> None:
    just_short = CRASH_RESET_SECONDS - 0.001
    assert (
        crash_count_after(7, running_since=0.0, crashed_at=just_short, droplet_changed=False) == 8
    )
    assert (
        crash_count_after(
            7, running_since=0.0, crashed_at=CRASH_RESET_SECONDS, droplet_changed=False
        )
        == 1
    )


def test_an_instance_that_never_ran_does_not_reset_the_count() -> None:
    assert crash_count_after(7, running_since=None, crashed_at=9_999.0, droplet_changed=False) == 8


def test_a_new_droplet_resets_the_count() -> None:
    assert crash_count_after(9, running_since=100.0, crashed_at=101.0, droplet_changed=True) == 1


def test_a_negative_count_is_refused() -> None:
    with pytest.raises(ValueError):
        crash_count_after(-1, running_since=None, crashed_at=0.0, droplet_changed=False)


def test_stable_rng_value_is_fixed_by_its_key_and_spread_across_keys() -> None:
    values = [stable_rng_value(f"instance-{n}/4") for n in range(2_000)]
    assert all(0.0 <= value < 1.0 for value in values)
    assert stable_rng_value("instance-7/4") == values[7]
    assert len(set(values)) > 1_990
    assert 0.45 < statistics.mean(values) < 0.55
