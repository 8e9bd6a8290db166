"""Small display helpers shared by the admin pages."""

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
