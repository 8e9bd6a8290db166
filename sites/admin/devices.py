"""Admin pages and actions around the device API: bootstrap tokens, node credentials, backups.

Imported by sites/admin/__init__.py. Secrets never appear on a page except once, in the message that follows
issuing a bootstrap token. Every action goes through sites.devices, so it is audited as in the API.
"""

from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from fleet.admin_display import badge
from fleet.admin_filters import IndexedValuesFilter
from fleet.admin_readonly import ReadOnlyAdmin
from fleet.audit.choices import Source
from fleet.errors import FleetError
from sites import devices
from sites.choices import BootstrapTokenState, SiteState
from sites.models import Backup, BootstrapToken, NodeCredential, Site

MAX_SITES_PER_ISSUE = 20  # each token is shown in its own message; more than a screenful gets lost


@admin.action(
    description="Issue bootstrap token for the machines waiting to register (shown once)",
    permissions=["issue_bootstrap_token"],
)
def issue_bootstrap_tokens(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Site]) -> None:
    """Site-list action: one token per selected site with the default lifetime, bound to the site's machines
    waiting to register (pre-registered, wiped, joining), each shown once."""
    _issue(model_admin, request, queryset, any_serial=False)


@admin.action(
    description="Issue site-wide bootstrap token, any machine of the site (shown once)",
    permissions=["issue_any_serial_bootstrap_token"],
)
def issue_site_wide_bootstrap_tokens(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Site]
) -> None:
    """Site-list action: a token any machine of the site may register with (an explicit choice, with its
    own permission: an unknown machine using it is quarantined at the site)."""
    _issue(model_admin, request, queryset, any_serial=True)


def _issue(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Site], *, any_serial: bool) -> None:
    sites = list(queryset.exclude(state=SiteState.DECOMMISSIONED)[: MAX_SITES_PER_ISSUE + 1])
    if len(sites) > MAX_SITES_PER_ISSUE:
        model_admin.message_user(
            request, f"Select at most {MAX_SITES_PER_ISSUE} sites: each token is shown once.", messages.ERROR
        )
        return
    for site in sites:
        try:
            token, plaintext = devices.bootstrap_token_issue(
                site=site, actor=request.user, source=Source.ADMIN, any_serial=any_serial
            )
        except FleetError as exc:
            model_admin.message_user(request, f"{site.code}: {exc.message}", messages.ERROR)
            continue
        machines = "any machine of the site" if token.any_serial else "machine(s) " + ", ".join(token.serials)
        model_admin.message_user(
            request,
            f"{site.code}: bootstrap token {plaintext} for {machines} "
            f"(expires {token.expires_at:%Y-%m-%d %H:%M} UTC). Copy it now: it is not shown again.",
            messages.WARNING,
        )


class TokenStateFilter(admin.SimpleListFilter):
    """The derived state of a token, as a filter on its timestamps."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return BootstrapTokenState.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        unused = Q(revoked_at__isnull=True, used_at__isnull=True)
        conditions: dict[str, Q] = {
            BootstrapTokenState.REVOKED: Q(revoked_at__isnull=False),
            BootstrapTokenState.USED: Q(revoked_at__isnull=True, used_at__isnull=False),
            BootstrapTokenState.EXPIRED: unused & Q(expires_at__lte=now),
            BootstrapTokenState.ACTIVE: unused & Q(expires_at__gt=now),
        }
        condition = conditions.get(self.value() or "")
        return queryset if condition is None else queryset.filter(condition)


@admin.register(BootstrapToken)
class BootstrapTokenAdmin(ReadOnlyAdmin):
    list_display = [
        "prefix",
        "site",
        "state_badge",
        "machines",
        "refusals",
        "quarantines",
        "note",
        "created_at",
        "created_by",
        "expires_at",
        "used_by",
    ]
    list_filter = [TokenStateFilter, "any_serial", ("site__region", IndexedValuesFilter)]
    search_fields = ["prefix", "site__code", "note"]
    list_select_related = ["site", "created_by", "used_by"]
    readonly_fields = [
        "site",
        "prefix",
        "note",
        "serials",
        "any_serial",
        "refusals",
        "quarantines",
        "created_at",
        "created_by",
        "expires_at",
        "used_at",
        "used_by",
        "revoked_at",
        "revoked_by",
        "revoke_reason",
    ]
    actions = ["revoke"]

    @admin.display(description="state")
    def state_badge(self, token: BootstrapToken) -> str:
        return badge(token.state, BootstrapTokenState(token.state).label)

    @admin.display(description="for")
    def machines(self, token: BootstrapToken) -> str:
        return "any machine" if token.any_serial else ", ".join(token.serials)

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[BootstrapToken]) -> None:
        revoked = refused = 0
        for token in queryset.filter(revoked_at__isnull=True):
            try:
                devices.bootstrap_token_revoke(token=token, actor=request.user, source=Source.ADMIN)
                revoked += 1
            except FleetError:
                refused += 1  # used tokens: nothing left to revoke
        self.message_user(request, f"Revoked {revoked} token(s); {refused} were already used.")

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("sites.change_bootstraptoken")


class NodeCredentialInline(admin.TabularInline):
    """The credentials a machine was given, newest first (prefix only)."""

    model = NodeCredential
    fields = ("prefix", "created_at", "last_used_at", "revoked_at", "revoke_reason")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[NodeCredential]:
        return super().get_queryset(request).order_by("-created_at")


@admin.register(Backup)
class BackupAdmin(ReadOnlyAdmin):
    list_display = ["application", "site", "namespace", "taken_at", "size", "location", "reported_by", "reported_at"]
    list_filter = ["application", ("site__region", IndexedValuesFilter)]
    search_fields = ["application", "site__code", "location"]
    list_select_related = ["site", "reported_by"]
    date_hierarchy = "taken_at"
    show_full_result_count = False
