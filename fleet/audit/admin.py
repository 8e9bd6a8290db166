"""Audit events in the admin: searchable, filterable, and read-only."""

from django.contrib import admin

from fleet.admin_readonly import ReadOnlyAdmin
from fleet.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_repr", "verb", "object_type", "object_repr", "source"]
    list_filter = ["verb", "source", "object_type", "created_at"]
    search_fields = ["actor_repr", "object_repr", "object_id", "verb"]
    date_hierarchy = "created_at"
    list_select_related = False
    show_full_result_count = False
