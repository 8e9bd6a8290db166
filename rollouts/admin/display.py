"""What the rollout admin pages share: the stacked bar of site states (rollouts.page.bar drawn as HTML),
the skipped-sites summary, the reason form and the confirmation page of every action, and the call of an
action's service with its outcome as a message."""

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from fleet.admin_display import badge
from fleet.audit.choices import Source
from fleet.errors import FleetError
from rollouts.choices import SkipReason
from rollouts.models import SiteCounters
from rollouts.page import bar


def progress_bar(counters: SiteCounters | dict[str, int], total: int, width: int = 220) -> SafeString:
    """A stacked bar of site states from the counters (no query): pending drawn pale as pending, rolled
    back as rolled back, and the counts spelled out beside it."""
    shown = bar(counters, total)
    if not shown.total:
        return format_html('<span style="color:#666">no sites</span>')
    segments = format_html_join(
        "",
        '<span title="{}: {}" style="display:inline-block;height:10px;width:{}%;background:{}"></span>',
        ((s.label, s.count, s.percent, s.colour) for s in shown.segments),
    )
    return format_html(
        '<span class="rollout-bar" style="display:inline-flex;width:{}px;background:#f4f4f4;border-radius:3px;'
        'overflow:hidden;vertical-align:middle">{}</span> <small>{}</small>',
        width,
        segments,
        shown.summary,
    )


def skipped_summary(counters: SiteCounters) -> SafeString:
    """`3 could not be reached, 1 never started`: why the skipped sites were skipped (none count as failed)."""
    shown = [(label.lower(), counters.skipped_counts[reason]) for reason, label in SkipReason.choices]
    shown = [(label, n) for label, n in shown if n]
    if not shown:
        return format_html("{}", "-")
    return format_html_join(", ", "{} {}", ((n, label) for label, n in shown))


def counts_summary(counts: dict[str, int]) -> SafeString:
    shown = [(state, n) for state, n in counts.items() if n]
    if not shown:
        return format_html("-")
    return format_html_join(" ", "{} {}", ((badge(state), n) for state, n in shown))


class ReasonForm(forms.Form):
    reason = forms.CharField(required=False, max_length=500, widget=forms.TextInput(attrs={"size": 60}))

    def __init__(self, *args: Any, required: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reason"].required = required  # the services insist too


def confirm_page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    obj: Any,
    action: str,
    title: str,
    form: Any,
    note: str = "",
    back_url: str = "",
) -> HttpResponse:
    """The page that asks "are you sure?" (and why) before an action's service is called."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.model._meta,
        "original": obj,
        "action": action,
        "note": note,
        "form": form,
        "back_url": back_url,
    }
    return TemplateResponse(request, "admin/rollouts/confirm_action.html", context)


def call_service(
    model_admin: admin.ModelAdmin, request: HttpRequest, service: Callable[..., Any], done: str, **kwargs: Any
) -> None:
    """Call an action's service as the person in the admin; `done`, or the service's refusal, as the message."""
    try:
        service(actor=request.user, source=Source.ADMIN, **kwargs)
    except FleetError as exc:
        model_admin.message_user(request, exc.message, messages.ERROR)
    else:
        model_admin.message_user(request, done)
