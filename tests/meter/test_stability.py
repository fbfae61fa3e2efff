"""When a meter that changed is set up again, and when it counts as unstable."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from custom_components.shelly_energy.meter.snapshot import MeterChange
from custom_components.shelly_energy.meter.stability import (
    SETUPS_PER_WINDOW,
    STABLE_AFTER_S,
    WINDOW_S,
    ChangeWatch,
)

FIRMWARE = MeterChange("firmware", "1.6.1", "1.7.0")
PROFILE = MeterChange("profile", "triphase", "monophase")
POLL_S = 5.0


def polls(watch: ChangeWatch, changes: list[MeterChange | None], start: float = 0.0) -> list[bool]:
    return [
        watch.observe(change, start + n * POLL_S, can_set_up=True)
        for n, change in enumerate(changes)
    ]


def test_a_change_is_believed_at_its_second_poll_and_set_up_once() -> None:
    watch = ChangeWatch()
    assert polls(watch, [None, FIRMWARE, FIRMWARE, FIRMWARE]) == [False, False, True, False]
    assert watch.unstable is None


def test_odd_replies_are_no_change() -> None:
    watch = ChangeWatch()
    assert polls(watch, [None, PROFILE, None, None, PROFILE, None, None]) == [False] * 7
    assert watch.unstable is None


def test_nothing_is_set_up_again_from_a_setup() -> None:
    watch = ChangeWatch()
    assert not watch.observe(FIRMWARE, 0.0, can_set_up=False)
    assert not watch.observe(FIRMWARE, 5.0, can_set_up=False)
    assert watch.observe(FIRMWARE, 10.0, can_set_up=True)


def test_flipping_at_every_poll_is_unstable_without_a_new_setup() -> None:
    watch = ChangeWatch()
    assert polls(watch, [None, PROFILE] * 4) == [False] * 8
    assert watch.unstable == PROFILE


def test_a_third_change_within_the_window_is_unstable() -> None:
    watch = ChangeWatch()
    setups = []
    now = 0.0
    for change in (FIRMWARE, PROFILE, FIRMWARE):
        # The new setup matches what the meter reports: polls differ from it again later.
        setups += polls(watch, [None, change, change], start=now)
        now += 3 * POLL_S
    assert setups.count(True) == SETUPS_PER_WINDOW
    assert watch.unstable == FIRMWARE


def test_changes_further_apart_than_the_window_are_each_set_up() -> None:
    watch = ChangeWatch()
    for number in range(5):
        assert polls(watch, [None, FIRMWARE, FIRMWARE], start=number * WINDOW_S) == [
            False,
            False,
            True,
        ]
    assert watch.unstable is None


def test_unstable_until_the_same_for_a_while() -> None:
    watch = ChangeWatch()
    polls(watch, [None, PROFILE] * 4)
    settled = 8 * POLL_S
    assert not watch.observe(None, settled, can_set_up=True)
    assert not watch.observe(None, settled + STABLE_AFTER_S - 1, can_set_up=True)
    assert watch.unstable == PROFILE
    assert not watch.observe(None, settled + STABLE_AFTER_S, can_set_up=True)
    assert watch.unstable is None


def test_settled_on_something_new_is_set_up_once() -> None:
    watch = ChangeWatch()
    polls(watch, [None, PROFILE] * 4)
    settled = 8 * POLL_S
    assert not watch.observe(PROFILE, settled + 1, can_set_up=True)
    assert watch.observe(PROFILE, settled + 1 + STABLE_AFTER_S, can_set_up=True)
    assert watch.unstable is None


@given(
    st.lists(
        st.tuples(st.sampled_from([None, FIRMWARE, PROFILE]), st.floats(0.5, 120.0)),
        max_size=400,
    )
)
def test_never_more_new_setups_than_allowed_in_any_window(
    reports: list[tuple[MeterChange | None, float]],
) -> None:
    watch = ChangeWatch()
    now = 0.0
    setups = []
    for change, gap in reports:
        now += gap
        if watch.observe(change, now, can_set_up=True):
            setups.append(now)
    for first in setups:
        assert len([when for when in setups if first <= when < first + WINDOW_S]) <= (
            SETUPS_PER_WINDOW + 1  # the one that ends an instability
        )
