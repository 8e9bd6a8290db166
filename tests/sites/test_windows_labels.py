"""Time windows in a site's local time, and label selectors over site labels."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from fleet.errors import Invalid
from sites.labels import LabelSelector
from sites.models import Site
from sites.windows import in_windows, validate_windows
from tests.factories import SiteFactory

NIGHTLY = [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "23:00", "end": "05:00"}]


def _utc(year: int, month: int, day: int, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


def test_window_crossing_midnight_is_read_in_local_time() -> None:
    # 2026-11-24 is a Tuesday. 05:30 UTC is 23:30 Monday in Chicago (UTC-6): inside.
    assert in_windows(NIGHTLY, "America/Chicago", _utc(2026, 11, 24, 5, 30))
    # 12:00 UTC is 06:00 in Chicago: after the window closed.
    assert not in_windows(NIGHTLY, "America/Chicago", _utc(2026, 11, 24, 12, 0))
    # Saturday 02:00 local belongs to Friday's window.
    assert in_windows(NIGHTLY, "America/Chicago", _utc(2026, 11, 28, 8, 0))
    # Sunday 02:00 local would belong to Saturday's window, which does not exist.
    assert not in_windows(NIGHTLY, "America/Chicago", _utc(2026, 11, 29, 8, 0))


def test_same_instant_differs_by_time_zone() -> None:
    at = _utc(2026, 11, 24, 5, 30)
    assert in_windows(NIGHTLY, "America/Chicago", at)  # 23:30
    assert not in_windows(NIGHTLY, "America/Los_Angeles", at)  # 21:30


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        ({"start": "01:00"}, "must be a list"),
        ([{"start": "25:00", "end": "02:00"}], "is not a time"),
        ([{"days": ["funday"], "start": "01:00", "end": "02:00"}], "days must be"),
        ([{"start": "01:00", "end": "01:00"}], "start and end are equal"),
        ([{"start": "01:00", "end": "02:00", "tz": "UTC"}], "only days, start and end"),
    ],
)
def test_invalid_windows_are_refused_with_the_reason(windows: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_windows(windows)


@pytest.mark.django_db
def test_label_selector_filters_like_kubernetes() -> None:
    a = SiteFactory(labels={"tier": "pilot", "pos": "v2"})
    b = SiteFactory(labels={"tier": "main", "pos": "v1", "legacy": "yes"})
    c = SiteFactory(labels={})

    def codes(selector: str) -> set[str]:
        return set(LabelSelector.parse(selector).filter(Site.objects.all()).values_list("code", flat=True))

    assert codes("tier=pilot") == {a.code}
    assert codes("tier==main") == {b.code}
    assert codes("tier!=pilot") == {b.code, c.code}
    assert codes("tier in (pilot, main)") == {a.code, b.code}
    assert codes("tier notin (main)") == {a.code, c.code}
    assert codes("legacy") == {b.code}
    assert codes("!legacy") == {a.code, c.code}
    assert codes("tier in (pilot,main),!legacy") == {a.code}
    for selector in ("tier=pilot", "tier!=pilot", "tier notin (main)", "!legacy", "legacy"):
        in_memory = {s.code for s in (a, b, c) if LabelSelector.parse(selector).matches(s.labels)}
        assert in_memory == codes(selector), selector


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("", "at least one term"),
        ("tier in (a", "unbalanced"),
        ("tier in ()", "at least one value"),
        ("ti er=x", "not a label selector term"),
        ("tier=bad value!", "not a label selector term"),
        ("-bad=x", "not a valid label key"),
    ],
)
def test_bad_selectors_are_refused(selector: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        LabelSelector.parse(selector)
