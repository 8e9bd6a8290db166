"""The API's own rows: integration tokens (stored as hashes) and the answers kept for `Idempotency-Key`."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    """An integration's key for `Authorization: Token <key>`: stored as its SHA-256, shown once at creation.

    The key is `eft_` and 43 URL-safe characters (256 random bits), so a fast hash is enough (nothing to
    stretch, unlike a password) and the hash itself is the lookup: the database never holds a usable key.
    `prefix` (the key's first 12 characters) names it in lists and audit records without revealing it.
    Every key expires (FLEET_API_TOKEN_TTL_DAYS); revoking keeps the row for the record.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="what the key is for, e.g. pos-sync")
    prefix = models.CharField(max_length=16, help_text="the key's first characters, to recognise it")
    key_hash = models.CharField(max_length=64, unique=True, help_text="sha256 of the key")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, blank=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True, help_text="to the minute")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="api_token_user_created")]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    @property
    def state(self) -> str:
        """`active`, `expired` or `revoked`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "active"


class IdempotencyRecord(models.Model):
    """One client's use of one Idempotency-Key: the request's fingerprint and, once done, the answer.

    `principal` identifies the client (a hash of its credentials), so two clients never share keys. An
    answer that carried a secret (a token shown once) is not kept: only its status and the id of the
    object it created (`withheld`), so the table never holds a usable secret. Records older than
    FLEET_IDEMPOTENCY_HOURS are ignored and purged by beat (`api.purge_idempotency_records`).
    """

    principal = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="sha256 of method, path and body")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text="empty while in progress")
    content_type = models.CharField(max_length=100, blank=True)
    body = models.BinaryField(blank=True, default=b"")
    withheld = models.BooleanField(default=False, help_text="the answer carried a secret: its body is not kept")
    resource_id = models.CharField(max_length=64, blank=True, help_text="the object a withheld answer created")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["principal", "key"], name="idempotency_key_unique")]

    def __str__(self) -> str:
        return f"{self.key} ({self.status_code or 'in progress'})"
