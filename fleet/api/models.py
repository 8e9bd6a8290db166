"""Stored answers to POST requests that carried an `Idempotency-Key` header."""

from django.db import models


class IdempotencyRecord(models.Model):
    """One client's use of one Idempotency-Key: the request's fingerprint and, once done, the answer.

    `principal` identifies the client (a hash of its credentials), so two clients never share keys.
    """

    principal = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="sha256 of method, path and body")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text="empty while in progress")
    content_type = models.CharField(max_length=100, blank=True)
    body = models.BinaryField(blank=True, default=b"")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["principal", "key"], name="idempotency_key_unique")]

    def __str__(self) -> str:
        return f"{self.key} ({self.status_code or 'in progress'})"
