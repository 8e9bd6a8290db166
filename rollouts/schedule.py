"""When a site may be changed: its maintenance windows, or failing those, outside its business hours.

Built on sites.windows (windows are weekly, in the site's local time). The window policy of a rollout
that respects windows:

- a site with maintenance windows is changed only inside one of them;
- a site without maintenance windows but with business hours is changed only outside business hours;
- a site with neither may be changed at any time.
"""

import datetime as dt
import zoneinfo
from typing import Any, Protocol

from sites.windows import DAYS, in_windows

# How far ahead to look for the next window: a weekly window recurs within 8 days.
_HORIZON_DAYS = 8


class WindowedSite(Protocol):
    @property
    def timezone(self) -> str: ...
    @property
    def business_hours(self) -> Any: ...
    @property
    def maintenance_windows(self) -> Any: ...


def _intervals(
    windows: list[dict[str, Any]], timezone: str, around: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Every occurrence (start, end) of the windows from the day before `around` to _HORIZON_DAYS after."""
    tz = zoneinfo.ZoneInfo(timezone)
    today = around.astimezone(tz).date()
    found: list[tuple[dt.datetime, dt.datetime]] = []
    for offset in range(-1, _HORIZON_DAYS + 1):
        day = today + dt.timedelta(days=offset)
        for window in windows:
            if DAYS[day.weekday()] not in window.get("days", list(DAYS)):
                continue
            start_t = dt.time.fromisoformat(window["start"])
            end_t = dt.time.fromisoformat(window["end"])
            end_day = day if end_t > start_t else day + dt.timedelta(days=1)
            start = dt.datetime.combine(day, start_t, tzinfo=tz).astimezone(dt.UTC)
            end = dt.datetime.combine(end_day, end_t, tzinfo=tz).astimezone(dt.UTC)
            if end > start:
                found.append((start, end))
    return sorted(found)


def next_window_start(windows: list[dict[str, Any]], timezone: str, after: dt.datetime) -> dt.datetime | None:
    """The first instant at or after `after` that lies in one of the windows (`after` itself when inside one);
    None when there are no windows."""
    if not windows:
        return None
    if in_windows(windows, timezone, after):
        return after
    starts = [start for start, _ in _intervals(windows, timezone, after) if start > after]
    return min(starts) if starts else None


def next_outside(windows: list[dict[str, Any]], timezone: str, after: dt.datetime) -> dt.datetime | None:
    """The first instant at or after `after` outside every window; None if the windows never close."""
    moment = after
    intervals = _intervals(windows, timezone, after)
    for _ in range(len(intervals) + 1):
        ends = [end for start, end in intervals if start <= moment < end]
        if not ends:
            return moment
        moment = max(ends)
    return None


def site_window_open(site: WindowedSite, at: dt.datetime) -> bool:
    """Whether the site may be changed at `at` (see the module docstring)."""
    if site.maintenance_windows:
        return in_windows(site.maintenance_windows, site.timezone, at)
    if site.business_hours:
        return not in_windows(site.business_hours, site.timezone, at)
    return True


def site_next_open(site: WindowedSite, after: dt.datetime) -> dt.datetime | None:
    """When the site may next be changed: `after` if it may be now; None if never."""
    if site.maintenance_windows:
        return next_window_start(site.maintenance_windows, site.timezone, after)
    if site.business_hours:
        return next_outside(site.business_hours, site.timezone, after)
    return after
