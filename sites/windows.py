"""Weekly time windows in a site's local time: business hours and maintenance windows.

A window is `{"days": ["mon", "tue", ...], "start": "HH:MM", "end": "HH:MM"}`; an end before the
start crosses midnight (the window belongs to the day it starts on). An empty list means "never" for
maintenance windows and "closed" for business hours.
"""

import datetime as dt
import zoneinfo
from typing import Any

from django.core.exceptions import ValidationError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_time(value: Any, where: str) -> dt.time:
    if not isinstance(value, str):
        raise ValidationError(f"{where} must be a string HH:MM")
    try:
        return dt.time.fromisoformat(value)
    except ValueError as exc:
        raise ValidationError(f"{where} {value!r} is not a time HH:MM") from exc


def validate_windows(value: Any) -> None:
    if not isinstance(value, list):
        raise ValidationError("windows must be a list of {days, start, end}")
    for i, window in enumerate(value):
        where = f"window {i}"
        if not isinstance(window, dict) or set(window) - {"days", "start", "end"}:
            raise ValidationError(f"{where} must be an object with only days, start and end")
        days = window.get("days", list(DAYS))
        if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
            raise ValidationError(f"{where}: days must be a non-empty list of {', '.join(DAYS)}")
        start = _parse_time(window.get("start"), f"{where} start")
        end = _parse_time(window.get("end"), f"{where} end")
        if start == end:
            raise ValidationError(f"{where}: start and end are equal; use 00:00 to 23:59 for a whole day")


def in_windows(windows: list[dict[str, Any]], timezone: str, at: dt.datetime) -> bool:
    """Whether the aware instant `at` falls in one of the windows, read in the site's time zone."""
    local = at.astimezone(zoneinfo.ZoneInfo(timezone))
    for window in windows:
        days = window.get("days", list(DAYS))
        start = dt.time.fromisoformat(window["start"])
        end = dt.time.fromisoformat(window["end"])
        today = DAYS[local.weekday()]
        yesterday = DAYS[(local.weekday() - 1) % 7]
        now = local.time()
        if start < end:
            if today in days and start <= now < end:
                return True
        elif (today in days and now >= start) or (yesterday in days and now < end):
            return True
    return False
