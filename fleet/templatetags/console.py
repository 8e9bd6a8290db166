"""Template tags of the support console: a time in the viewer's zone, a state as a label, a run's subject."""

import datetime as dt

from django import template
from django.utils.safestring import SafeString

from fleet import admin_display

register = template.Library()


@register.simple_tag
def when(at: dt.datetime | None, site_tz: str = "") -> SafeString:
    """`{% when site.health_since site.timezone %}`: see fleet.admin_display.when."""
    return admin_display.when(at, site_tz)


@register.simple_tag
def state(value: str, label: str = "") -> SafeString:
    """`{% state site.health site.get_health_display %}`: the coloured label of a state."""
    return admin_display.badge(value, str(label) if label else value.replace("_", " "))


@register.simple_tag
def raw(sentence: str, detail: str) -> SafeString:
    """A sentence for people with the raw error behind a disclosure."""
    return admin_display.raw_detail(sentence, detail)


@register.simple_tag
def subject_url(run: object) -> str:
    from fleet.console.dashboard import subject_url as url

    return url(run)  # type: ignore[arg-type]
