"""Audit events in the admin: searchable, filterable, and read-only."""

from django.contrib import admin

from fleet.admin_readonly import ReadOnlyAdmin
from fleet.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "who", "verb", "object_type", "what", "source"]
    list_filter = ["verb", "source", "object_type", "created_at"]
    search_fields = ["actor_repr", "object_repr", "object_id", "verb"]
    date_hierarchy = "created_at"
    list_select_related = False
    show_full_result_count = False

    # Headed for people ("who", "what"), not by the column's name (`actor_repr`, `object_repr`).
    @admin.display(description="who", ordering="actor_repr")
    def who(self, event: AuditEvent) -> str:
        return event.actor_repr

    @admin.display(description="what", ordering="object_repr")
    def what(self, event: AuditEvent) -> str:
        return event.object_repr
