"""What the machines themselves hold or report: bootstrap tokens, node credentials, backups.

Secrets (bootstrap tokens, node credentials) are stored as the sha256 of a random value: they are
looked up by hash, so the plaintext exists only in the answer that issued it. A short prefix of the
plaintext is kept so staff can tell tokens apart ("efb_Ab12Cd34...").
"""

import datetime as dt

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from sites.choices import BootstrapTokenState
from sites.models.inventory import Node, Site


class BootstrapToken(models.Model):
    """A single-use, expiring secret that lets one machine register at one site.

    Staff (or the provisioning workflow) issue it and put it on the machine's boot medium; the machine
    presents it once to `device/register/`. Its state is derived from the timestamps, never stored.

    It is bound to the serials it was issued for (`serials`): a machine with another serial is refused
    without touching any node. A token for any machine of the site (`any_serial`) is an explicit choice
    that needs its own permission. Refused registrations and the quarantines it caused are counted on
    the row, so a token that is being tried against serials it was not made for revokes itself
    (sites.devices).
    """

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="bootstrap_tokens")
    prefix = models.CharField(max_length=16, help_text="the first characters of the token, for recognising it")
    token_hash = models.CharField(max_length=64, unique=True, editable=False, help_text="sha256 hex of the token")
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoke_reason = models.CharField(max_length=200, blank=True)
    serials = models.JSONField(default=list, blank=True, help_text="the serials of the machines it may register")
    any_serial = models.BooleanField(default=False, help_text="any machine of the site may use it (site-wide token)")
    refusals = models.PositiveIntegerField(default=0, help_text="registrations refused for the identity presented")
    quarantines = models.PositiveIntegerField(default=0, help_text="machines it put in quarantine")

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("issue_any_serial_bootstraptoken", "Can issue a bootstrap token that any machine of a site may use"),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.site.code})"

    def admits_serial(self, serial: str) -> bool:
        """Whether the token was issued for this machine (a site-wide token was issued for any)."""
        return self.any_serial or serial in (self.serials or [])

    def state_at(self, now: dt.datetime) -> str:
        """Revoked wins over used, used over expired: the most telling reason it can no longer be used."""
        if self.revoked_at is not None:
            return BootstrapTokenState.REVOKED
        if self.used_at is not None:
            return BootstrapTokenState.USED
        if self.expires_at <= now:
            return BootstrapTokenState.EXPIRED
        return BootstrapTokenState.ACTIVE

    @property
    def state(self) -> str:
        return self.state_at(timezone.now())


class NodeCredential(models.Model):
    """The secret a registered machine sends as `Authorization: Node <token>`. At most one is active
    per node (a database constraint); issuing a new one revokes the old, and a wipe revokes it first."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="credentials")
    prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["node"], condition=Q(revoked_at__isnull=True), name="node_credential_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.node.serial})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Backup(models.Model):
    """A cloud backup of one application's data at a site, as reported by the edge in its heartbeat.

    The replace workflow re-hydrates a new machine from the latest one per application
    (sites.selectors.latest_backups). A repeated report of the same backup updates the same row.
    Only backups of applications with a restore target are kept (sites.rehydration), in the namespace of
    that target: the device says where its backup is, never what runs to restore it or where.
    """

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="backups")
    reported_by = models.ForeignKey(Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # A name, not a key to rollouts.Application: dependencies point rollouts -> sites, never back.
    application = models.CharField(max_length=100)
    namespace = models.CharField(max_length=63)
    taken_at = models.DateTimeField()
    location = models.CharField(max_length=1000, help_text="where the backup is, e.g. s3://bucket/key")
    size = models.BigIntegerField(help_text="bytes")
    reported_at = models.DateTimeField()

    class Meta:
        ordering = ["site", "application", "-taken_at"]
        constraints = [
            models.UniqueConstraint(fields=["site", "application", "location"], name="backup_unique_location"),
        ]
        indexes = [models.Index(fields=["site", "application", "-taken_at"], name="backup_latest")]

    def __str__(self) -> str:
        return f"{self.application} at {self.site.code}, {self.taken_at:%Y-%m-%d %H:%M}"
