"""AuditEvent: one row per state-changing action. Rows are written once and never edited."""

from django.conf import settings
from django.db import models

from fleet.audit.choices import Source


class AuditEvent(models.Model):
    """An action someone (or something: beat, a workflow, a device) took on an object.

    `actor_repr` keeps the actor's name even after the user is deleted; `object_type` is
    `app_label.model` and `object_id` the primary key or natural key, so events survive their object.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_repr = models.CharField(max_length=150, help_text="user name, or system:<component>")
    verb = models.CharField(max_length=64, db_index=True, help_text="e.g. create, update, delete, wipe")
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    source = models.CharField(max_length=16, choices=Source.choices, help_text="the door the action came through")
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.actor_repr} {self.verb} {self.object_type} {self.object_repr}"
