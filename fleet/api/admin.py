"""Staff issue and revoke integration tokens in the admin; both are audited."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from fleet.api.tokens import api_token_issue, api_token_revoke

admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class AuditedTokenAdmin(TokenAdmin):
    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            return  # a token has nothing to edit; DRF's form only picks the user
        obj.key = api_token_issue(user=obj.user, actor=request.user, source="admin").key

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        api_token_revoke(token=obj, actor=request.user, source="admin")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for token in queryset.select_related("user"):
            api_token_revoke(token=token, actor=request.user, source="admin")
