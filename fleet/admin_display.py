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
