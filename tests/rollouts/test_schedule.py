"""When a site may be changed: maintenance windows, business hours, the next opening."""

import datetime as dt
from dataclasses import dataclass, field

from rollouts.schedule import next_outside, next_window_start, site_next_open, site_window_open

UTC = dt.UTC
NIGHTLY = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "02:00", "end": "04:00"}]
# 2025-03-03 is a Monday; Chicago is UTC-6 in early March (DST starts 2025-03-09).
MONDAY_NOON_CHICAGO = dt.datetime(2025, 3, 3, 18, 0, tzinfo=UTC)


@dataclass
class Site:
    timezone: str = "America/Chicago"
    business_hours: list = field(default_factory=list)
    maintenance_windows: list = field(default_factory=list)


def test_next_window_start_in_local_time() -> None:
    start = next_window_start(NIGHTLY, "America/Chicago", MONDAY_NOON_CHICAGO)
    assert start == dt.datetime(2025, 3, 4, 8, 0, tzinfo=UTC)  # Tuesday 02:00 CST


def test_inside_a_window_the_next_start_is_now() -> None:
    inside = dt.datetime(2025, 3, 4, 8, 30, tzinfo=UTC)
    assert next_window_start(NIGHTLY, "America/Chicago", inside) == inside


def test_windows_on_some_days_and_across_midnight() -> None:
    sunday_late = [{"days": ["sun"], "start": "23:00", "end": "01:00"}]
    start = next_window_start(sunday_late, "UTC", MONDAY_NOON_CHICAGO)
    assert start == dt.datetime(2025, 3, 9, 23, 0, tzinfo=UTC)
    assert next_window_start([], "UTC", MONDAY_NOON_CHICAGO) is None


def test_windows_follow_daylight_saving() -> None:
    after_dst = dt.datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    assert next_window_start(NIGHTLY, "America/Chicago", after_dst) == dt.datetime(2025, 3, 11, 7, 0, tzinfo=UTC)


def test_next_outside_business_hours() -> None:
    hours = [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "10:00", "end": "22:00"}]
    assert next_outside(hours, "America/Chicago", MONDAY_NOON_CHICAGO) == dt.datetime(2025, 3, 4, 4, 0, tzinfo=UTC)
    early = dt.datetime(2025, 3, 3, 14, 0, tzinfo=UTC)  # 08:00 local, before opening
    assert next_outside(hours, "America/Chicago", early) == early


def test_site_policy_maintenance_windows_then_business_hours_then_always() -> None:
    hours = [{"days": ["mon"], "start": "10:00", "end": "22:00"}]
    with_windows = Site(maintenance_windows=NIGHTLY, business_hours=hours)
    only_hours = Site(business_hours=hours)
    neither = Site()

    assert not site_window_open(with_windows, MONDAY_NOON_CHICAGO)
    assert site_next_open(with_windows, MONDAY_NOON_CHICAGO) == dt.datetime(2025, 3, 4, 8, 0, tzinfo=UTC)
    assert not site_window_open(only_hours, MONDAY_NOON_CHICAGO)
    assert site_next_open(only_hours, MONDAY_NOON_CHICAGO) == dt.datetime(2025, 3, 4, 4, 0, tzinfo=UTC)
    assert site_window_open(neither, MONDAY_NOON_CHICAGO)
    assert site_next_open(neither, MONDAY_NOON_CHICAGO) == MONDAY_NOON_CHICAGO
