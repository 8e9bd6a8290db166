"""Small display helpers shared by the admin pages."""

import datetime as dt

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

BADGE_COLOURS = {
    "green": ("active", "reachable", "succeeded", "running", "healthy", "ready"),
    "blue": ("planned", "preregistered", "joining", "provisioning", "pending", "waiting", "scheduled"),
    "orange": (
        "degraded",
        "cordoned",
        "draining",
        "wiping",
        "paused",
        "awaiting_approval",
        "waiting_window",
        "not_ready",
    ),
    "red": ("offline", "broken", "quarantined", "unreachable", "unauthorized", "failed", "halted", "not_seen"),
    "grey": ("decommissioned", "retired", "wiped", "unknown", "cancelled", "skipped", "rolled_back"),
}
_HEX = {"green": "#1e7e34", "blue": "#1f5fa8", "orange": "#b45f06", "red": "#b00020", "grey": "#666"}


def badge(state: str, label: str | None = None) -> SafeString:
    """A coloured pill for a state value, the same colour for the same meaning on every page."""
    colour = next((c for c, states in BADGE_COLOURS.items() if state in states), "grey")
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 8px;border-radius:9px;font-size:11px;'
        'white-space:nowrap">{}</span>',
        _HEX[colour],
        label or state,
    )


def when(at: dt.datetime | None, site_tz: str = "") -> SafeString:
    """A time as `<time datetime=...>`: the server writes it in TIME_ZONE with seconds, and the console's
    script (fleet/static/console/console.js) rewrites it to the viewer's time zone and adds the site's
    local time beside it when `site_tz` names one. Empty times are a dash."""
    if at is None:
        return format_html("{}", "-")
    local = timezone.localtime(at)
    return format_html(
        '<time datetime="{}" data-site-tz="{}" title="{}">{}</time>',
        at.isoformat(),
        site_tz,
        local.strftime("%Y-%m-%d %H:%M:%S %Z"),
        local.strftime("%Y-%m-%d %H:%M:%S"),
    )


def raw_detail(sentence: str, detail: str) -> SafeString:
    """A message for people, the raw error for engineers behind a disclosure (sites.messages keeps both)."""
    if not detail or detail == sentence:
        return format_html("{}", sentence or "-")
    return format_html(
        '{} <details class="raw-detail"><summary>raw error</summary><pre>{}</pre></details>', sentence or "-", detail
    )


def duration(seconds: float | None) -> str:
    """A span for people: `2 h 05 min`, `3 min 20 s`, `12 s`, `0.4 s`; `-` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{max(seconds, 0):.1f} s"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
