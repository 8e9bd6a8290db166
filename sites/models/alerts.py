"""Alerts: something at a site that asks a person to act, opened and resolved by the system.

One kind so far, `node_down`: a machine in service has not been ready for FLEET_NODE_DOWN_AFTER while
its cluster answers. It asks support to look and, if the machine is dead, to replace it. It resolves
itself when the node is ready again or leaves service (replaced, wiped, retired); see sites.alerts.
"""

from django.db import models
from django.db.models import Q

from sites.choices import AlertKind
from sites.models.inventory import Node, Site


class Alert(models.Model):
    """An alert with its open and resolved times; at most one open alert per kind and node."""

    kind = models.CharField(max_length=16, choices=AlertKind.choices)
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="alerts")
    node = models.ForeignKey(Node, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    message = models.CharField(max_length=500, help_text="what is wrong, since when, and what is asked")
    opened_at = models.DateTimeField(db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)
    resolution = models.CharField(max_length=200, blank=True, help_text="why it was resolved")

    class Meta:
        ordering = ["-opened_at", "-id"]
        indexes = [models.Index(fields=["site", "resolved_at"], name="alert_site_open_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "node"], condition=Q(resolved_at__isnull=True), name="alert_one_open_per_node"
            ),
        ]

    def __str__(self) -> str:
        subject = self.node.hostname if self.node_id and self.node else self.site.code
        return f"{self.get_kind_display()}: {subject}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None
