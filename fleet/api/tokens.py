"""Integration tokens: issued at `auth/token/` or by staff in the admin, revoked in the admin or the API.

A key is generated, returned once and stored only as its SHA-256 (`ApiToken.key_hash`); it expires after
FLEET_API_TOKEN_TTL_DAYS (or the lifetime staff chose) and can be revoked. `ApiTokenAuthentication`
keeps DRF's header, `Authorization: Token <key>`, and refuses an unknown, expired or revoked key with 401.
Issuing and revoking are audited; the audit row names the key's prefix, never the key.
"""

import datetime as dt
import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from fleet.api.models import ApiToken
from fleet.audit.choices import Source
from fleet.audit.services import Actor, actor_name, audit_record
from fleet.errors import Conflict, Forbidden, Invalid

KEY_PREFIX = "eft_"
PREFIX_LENGTH = 12  # "eft_" and 8 characters: enough to tell keys apart, 48 of 256 bits
MAX_LIFETIME = dt.timedelta(days=366)
# A key used again within this long keeps its recorded last use: one write a minute, not one a request.
LAST_USED_PRECISION = dt.timedelta(minutes=1)


def hash_key(key: str) -> str:
    """What is stored and looked up for a key. A fast hash suffices: keys are 256 random bits."""
    return hashlib.sha256(key.encode()).hexdigest()


def default_lifetime() -> dt.timedelta:
    return dt.timedelta(days=settings.FLEET_API_TOKEN_TTL_DAYS)


def api_token_issue(
    *, user: AbstractBaseUser, actor: Actor, source: Source, name: str = "", lifetime: dt.timedelta | None = None
) -> tuple[ApiToken, str]:
    """A new key for `user`: the row (holding its hash) and the key itself, which nothing keeps."""
    lifetime = default_lifetime() if lifetime is None else lifetime
    if lifetime <= dt.timedelta(0) or lifetime > MAX_LIFETIME:
        raise Invalid(f"a token lives between a minute and {MAX_LIFETIME.days} days", field="lifetime")
    if not user.is_active:
        raise Invalid(f"user {user.get_username()} is inactive", field="user")
    _check_may_issue_for(actor, user)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,  # type: ignore[misc]  # any AUTH_USER_MODEL
            name=name[:100],
            prefix=key[:PREFIX_LENGTH],
            key_hash=hash_key(key),
            created_at=now,
            created_by=actor_name(actor)[:150],
            expires_at=now + lifetime,
        )
        audit_record(
            actor=actor,
            verb="issue_token",
            obj=token,
            source=source,
            payload={"user": user.get_username(), "prefix": token.prefix, "expires_at": token.expires_at.isoformat()},
        )
    return token, key


def _check_may_issue_for(actor: Actor, user: Any) -> None:
    """A key acts with all of its user's rights, so a person issues one for someone else only when they
    hold every right that user has (and superuser status for a superuser): staff allowed to add tokens
    cannot mint their way to more than they have."""
    if not isinstance(actor, AbstractBaseUser) or actor.pk == user.pk:
        return  # the user themselves (auth/token/), or the system
    if getattr(actor, "is_superuser", False):
        return
    if getattr(user, "is_superuser", False):
        raise Forbidden(f"only a superuser may issue a key for superuser {user.get_username()}", field="user")
    missing = sorted(user.get_all_permissions() - actor.get_all_permissions())  # type: ignore[attr-defined]
    if missing:
        raise Forbidden(
            f"{user.get_username()} has permissions you do not ({', '.join(missing[:5])}"
            f"{', …' if len(missing) > 5 else ''}); a key for them would give you those",
            field="user",
        )


def api_token_revoke(*, token: ApiToken, actor: Actor, source: Source) -> ApiToken:
    """Make the key unusable from the next request on; the row stays. Revoking twice is a 409."""
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().select_related("user").get(pk=token.pk)
        if token.revoked_at is not None:
            raise Conflict(f"token {token.prefix}… was already revoked at {token.revoked_at:%Y-%m-%d %H:%M} UTC")
        token.revoked_at = timezone.now()
        token.revoked_by = actor_name(actor)[:150]
        token.save(update_fields=["revoked_at", "revoked_by"])
        audit_record(
            actor=actor,
            verb="revoke_token",
            obj=token,
            source=source,
            payload={"user": token.user.get_username(), "prefix": token.prefix},
        )
    return token


def api_token_authenticate(key: str) -> ApiToken:
    """The active token for `key` (its user loaded), recording its use at most once a minute.

    Raises AuthenticationFailed naming why: unknown, expired, revoked, or its user is inactive.
    """
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_key(key)).first()
    if token is None:
        raise exceptions.AuthenticationFailed("invalid token")
    now = timezone.now()
    if token.revoked_at is not None:
        raise exceptions.AuthenticationFailed("this token was revoked")
    if token.expires_at <= now:
        raise exceptions.AuthenticationFailed(f"this token expired at {token.expires_at:%Y-%m-%d %H:%M} UTC")
    if not token.user.is_active:
        raise exceptions.AuthenticationFailed("the token's user is inactive")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
        # Conditional, so concurrent requests of the same minute write once between them.
        stale = now - LAST_USED_PRECISION
        ApiToken.objects.filter(pk=token.pk).exclude(last_used_at__gt=stale).update(last_used_at=now)
        token.last_used_at = now
    return token


class ApiTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>` against ApiToken: DRF's header parsing, our lookup by hash."""

    keyword = "Token"

    def authenticate_credentials(self, key: str) -> tuple[Any, ApiToken]:
        token = api_token_authenticate(key)
        return token.user, token


class AuthorizationHeaderScheme(OpenApiAuthenticationExtension):
    """Names one of our `Authorization: <keyword> <key>` schemes in the schema (drf-spectacular knows
    DRF's authentication classes, not ours): a subclass sets target_class, name and what the key is."""

    key_description = ""

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "Authorization", "description": self.key_description}


class ApiTokenAuthenticationScheme(AuthorizationHeaderScheme):
    target_class = "fleet.api.tokens.ApiTokenAuthentication"
    name = "tokenAuth"
    key_description = "`Token <key>`, the key auth/token/ answered (shown once; it expires)"
