"""Staff issue and revoke integration tokens in the admin; both are audited.

Issuing shows the key once, on a page rendered from memory (not a message stored in the session or a
cookie). Lists show the prefix, owner, expiry and last use; a token is never edited or deleted, only
revoked, so the record of who held which key stays.
"""

import datetime as dt
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from fleet.admin_display import badge
from fleet.admin_forms import ServiceAdminMixin, ServiceForm
from fleet.api.models import ApiToken
from fleet.api.tokens import MAX_LIFETIME, api_token_issue, api_token_revoke
from fleet.audit.choices import Source
from fleet.errors import FleetError

STATE_COLOURS = {"active": "active", "expired": "unknown", "revoked": "cancelled"}


class ApiTokenIssueForm(ServiceForm):
    lifetime_days = forms.IntegerField(min_value=1, max_value=MAX_LIFETIME.days, help_text="the key expires then")

    class Meta:
        model = ApiToken
        fields = ["user", "name"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["lifetime_days"].initial = settings.FLEET_API_TOKEN_TTL_DAYS
        self.key = ""

    def apply(self, actor: Any) -> ApiToken:
        token, self.key = api_token_issue(
            user=self.cleaned_data["user"],
            actor=actor,
            source=Source.ADMIN,
            name=self.cleaned_data.get("name") or "",
            lifetime=dt.timedelta(days=self.cleaned_data["lifetime_days"]),
        )
        return token


class TokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return [("active", "active"), ("expired", "expired"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        conditions = {
            "revoked": Q(revoked_at__isnull=False),
            "expired": Q(revoked_at__isnull=True, expires_at__lte=now),
            "active": Q(revoked_at__isnull=True, expires_at__gt=now),
        }
        condition = conditions.get(self.value() or "")
        return queryset if condition is None else queryset.filter(condition)


@admin.action(description="Revoke selected tokens", permissions=["change"])
def revoke_tokens(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
    revoked = 0
    for token in queryset.filter(revoked_at__isnull=True):
        try:
            api_token_revoke(token=token, actor=request.user, source=Source.ADMIN)
        except FleetError as exc:  # revoked by someone else meanwhile
            model_admin.message_user(request, exc.message, messages.WARNING)
        else:
            revoked += 1
    model_admin.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)


@admin.register(ApiToken)
class ApiTokenAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_display = ["prefix", "name", "user", "state_badge", "created_at", "expires_at", "last_used_at"]
    list_filter = [TokenStateFilter]
    search_fields = ["prefix", "name", "user__username"]
    list_select_related = ["user"]
    actions = [revoke_tokens]
    readonly_fields = [
        "user", "name", "prefix", "created_at", "created_by", "expires_at", "last_used_at", "revoked_at", "revoked_by",
    ]  # fmt: skip
    autocomplete_fields = ["user"]

    @admin.display(description="state")
    def state_badge(self, obj: ApiToken) -> Any:
        return badge(STATE_COLOURS[obj.state], obj.state)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiTokenIssueForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else []

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else ["user", "name", "lifetime_days"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the row is the record of who held the key

    def response_add(self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None) -> HttpResponse:
        """The key, once, on a page of its own that no cache keeps."""
        form = getattr(request, "_api_token_form", None)
        key = getattr(form, "key", "")
        context = {**self.admin_site.each_context(request), "opts": self.opts, "token": obj, "key": key}
        response = TemplateResponse(request, "admin/api/apitoken/issued.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Any:
        request._api_token_form = form  # type: ignore[attr-defined]  # response_add shows its key
        return super().save_form(request, form, change)
