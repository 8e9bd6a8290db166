"""The site page's action buttons: Onboard and Decommission, each with a confirmation page, then the same
doors as the API (sites.site_lifecycle). Mixed into SiteAdmin (sites/admin/site.py); the buttons are in
templates/admin/sites/site/change_form.html. The site list's "Decommission site…" action uses the same
form and door.

The first bootstrap token an onboarding issues is shown once, in the message that follows it.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from fleet.admin_forms import errors_to_form
from fleet.audit.choices import Source
from fleet.errors import FleetError
from fleet.workflows import WorkflowRun, active_run
from sites import site_lifecycle
from sites.choices import SiteState
from sites.models import Node, Site


class DecommissionForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 2}))
    confirm = forms.CharField(max_length=16, label="Type the site's code to confirm")


def _run_link(run: WorkflowRun) -> str:
    url = reverse("admin:workflows_workflowrun_change", args=[run.pk])
    return format_html('<a href="{}">run {}</a>', url, run.pk)


class SiteLifecycleAdminMixin(admin.ModelAdmin):
    """Onboard and Decommission on a site's page (and the list's decommission action)."""

    def get_urls(self) -> list[URLPattern]:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        own = [
            path("<int:object_id>/onboard/", self.admin_site.admin_view(self.onboard_view), name=f"{prefix}_onboard"),
            path(
                "<int:object_id>/decommission/",
                self.admin_site.admin_view(self.decommission_view),
                name=f"{prefix}_decommission",
            ),
        ]
        return own + super().get_urls()

    def has_onboard_site_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(site_lifecycle.ONBOARD_PERMISSION))

    def has_decommission_site_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(site_lifecycle.DECOMMISSION_PERMISSION))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        site = Site.objects.filter(pk=object_id).first() if object_id.isdigit() else None
        live = site is not None and site.state != SiteState.DECOMMISSIONED
        buttons = {
            "can_onboard": live and self.has_onboard_site_permission(request),
            "can_decommission": live and self.has_decommission_site_permission(request),
            "site_run": active_run(site) if site is not None else None,
        }
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **buttons})

    # --- onboard ------------------------------------------------------------------------------------

    def onboard_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_onboard_site_permission(request):
            raise PermissionDenied
        site = get_object_or_404(Site, pk=object_id)
        change_url = reverse("admin:sites_site_change", args=[site.pk])
        if request.method == "POST":
            try:
                onboarding = site_lifecycle.site_onboard_request(site=site, actor=request.user, source=Source.ADMIN)
            except FleetError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                return HttpResponseRedirect(change_url)
            self.message_user(
                request, format_html("Onboarding of {} started: {}.", site.code, _run_link(onboarding.run))
            )
            first_boot = onboarding.first_boot
            if first_boot is not None:
                self.message_user(
                    request,
                    f"{site.code}: bootstrap token {first_boot.plaintext} for machine(s) "
                    f"{', '.join(first_boot.token.serials)} (expires {first_boot.token.expires_at:%Y-%m-%d %H:%M} "
                    "UTC). Copy it now: it is not shown again.",
                    messages.WARNING,
                )
            return HttpResponseRedirect(change_url)
        waiting = Node.objects.filter(site=site, state__in=("preregistered", "wiped", "joining")).order_by("serial")
        context = {
            **self.admin_site.each_context(request),
            "title": f"Onboard site {site.code}",
            "site": site,
            "waiting": list(waiting),
            "running": active_run(site),
            "opts": self.opts,
        }
        return TemplateResponse(request, "admin/sites/site/onboard_confirmation.html", context)

    # --- decommission -------------------------------------------------------------------------------

    def decommission_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_decommission_site_permission(request):
            raise PermissionDenied
        site = get_object_or_404(Site, pk=object_id)
        return self._decommission(request, site, from_list=False) or HttpResponseRedirect(
            reverse("admin:sites_site_change", args=[site.pk])
        )

    @admin.action(description="Decommission site…", permissions=["decommission_site"])
    def decommission_site(self, request: HttpRequest, queryset: Any) -> HttpResponse | None:
        """One site at a time: a reason and its code typed out, then the door decides."""
        sites = list(queryset[:2])
        if len(sites) != 1:
            self.message_user(request, "Decommission one site at a time: select exactly one.", messages.ERROR)
            return None
        return self._decommission(request, sites[0], from_list=True)

    def _decommission(self, request: HttpRequest, site: Site, *, from_list: bool) -> HttpResponse | None:
        """The confirmation page, or None once the door accepted (or refused without a field to show)."""
        form = DecommissionForm(request.POST if "confirm" in request.POST else None)
        if form.is_bound and form.is_valid():
            try:
                run = site_lifecycle.site_decommission_request(
                    site=site, actor=request.user, source=Source.ADMIN, **form.cleaned_data
                )
            except FleetError as exc:
                if not errors_to_form(form, exc):
                    self.message_user(request, exc.message, messages.ERROR)
                    return None
            else:
                self.message_user(
                    request,
                    format_html(
                        "Site {} is decommissioned; its credentials are being revoked and its project archived: {}.",
                        site.code,
                        _run_link(run),
                    ),
                )
                return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"Decommission site {site.code}",
            "site": site,
            "form": form,
            "opts": self.opts,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME if from_list else "",
        }
        return TemplateResponse(request, "admin/sites/site/decommission_confirmation.html", context)
