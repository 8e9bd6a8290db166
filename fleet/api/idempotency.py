"""`Idempotency-Key` for POSTs under /api/v1/: a retried request gets the first answer, not a second effect.

The first request with a key inserts a record (the unique constraint decides races), runs, and stores
its answer when it succeeded (2xx). A retry with the same key and the same request replays that
answer with `Idempotent-Replayed: true`; the same key with a different request is refused (422); a
retry while the first is still running is refused (409). Failed requests (4xx/5xx) store nothing, so
the client may correct and retry with the same key. Records count for FLEET_IDEMPOTENCY_HOURS and are
purged by beat (`api.purge_idempotency_records`).

An answer that carries a secret shown once (a bootstrap token, an API key, a node credential) is never
stored: the record keeps its status and the id of the object it created, and a retry is answered 409
with that id and without the secret (the client revokes it and asks for a new one). Views mark such
answers with `withhold_from_replay`; as a safety net, any JSON answer with a secret-looking field
(`token`, `key`, `password`, ...) is withheld too.
"""

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from fleet.api.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
WITHHOLD_ATTRIBUTE = "_idempotency_withhold"
# Field names that mark an answer as carrying a secret, wherever they appear in its JSON.
SECRET_FIELDS = frozenset({"token", "node_token", "key", "secret", "password", "kubeconfig", "private_key"})
# Free-form maps whose keys are the client's own names (a label called `key`), not fields of ours.
FREE_FORM_FIELDS = frozenset({"labels", "annotations", "values", "templates", "facts", "versions", "payload"})

R = TypeVar("R", bound=HttpResponse)


def lifetime() -> dt.timedelta:
    return dt.timedelta(hours=settings.FLEET_IDEMPOTENCY_HOURS)


def withhold_from_replay(response: R, *, resource_id: Any) -> R:
    """Mark an answer as carrying a secret: an Idempotency-Key keeps only its status and `resource_id`."""
    setattr(response, WITHHOLD_ATTRIBUTE, str(resource_id))
    return response


class IdempotencyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        key = request.headers.get(HEADER)
        if request.method != "POST" or key is None or not request.path.startswith("/api/v1/"):
            return self.get_response(request)
        if not key or len(key) > MAX_KEY_LENGTH:
            return JsonResponse({"detail": f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters"}, status=400)
        principal = request_principal(request)
        if principal is None:
            return self.get_response(request)  # unauthenticated: the view answers 401 itself
        fingerprint = request_fingerprint(request)
        record = _claim(principal, key, fingerprint)
        if record is None:
            return _replay(principal, key, fingerprint)
        response = self.get_response(request)
        if 200 <= response.status_code < 300 and not response.streaming:
            _store(record, response)
        else:
            record.delete()
        return response


def _claim(principal: str, key: str, fingerprint: str) -> IdempotencyRecord | None:
    """Insert the record for this use of the key; None when a live one exists. An expired record that
    beat has not purged yet is replaced, so a key counts for the documented lifetime and no longer."""
    for _attempt in range(2):
        try:
            with transaction.atomic():
                return IdempotencyRecord.objects.create(principal=principal, key=key, fingerprint=fingerprint)
        except IntegrityError:
            expired = IdempotencyRecord.objects.filter(
                principal=principal, key=key, created_at__lt=timezone.now() - lifetime()
            ).delete()[0]
            if not expired:
                return None
    return None


def _store(record: IdempotencyRecord, response: HttpResponse) -> None:
    record.status_code = response.status_code
    record.content_type = response.get("Content-Type", "")
    withheld = getattr(response, WITHHOLD_ATTRIBUTE, None)
    if withheld is None:
        withheld = _secret_bearing(response)
    if withheld is None:
        record.body = response.content
    else:
        record.withheld, record.resource_id, record.body = True, withheld[:64], b""
    record.save(update_fields=["status_code", "content_type", "body", "withheld", "resource_id"])


def _secret_bearing(response: HttpResponse) -> str | None:
    """The object id of a JSON answer holding a secret-looking field ("" when it has none), else None."""
    if "json" not in response.get("Content-Type", ""):
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    if not _has_secret_field(body, depth=0):
        return None
    if isinstance(body, dict):
        for name in ("id", "node_id"):
            if body.get(name) is not None:
                return str(body[name])
    return ""


def _has_secret_field(value: Any, *, depth: int) -> bool:
    if depth > 4:
        return False
    if isinstance(value, dict):
        return any(
            (k in SECRET_FIELDS and v not in (None, ""))
            or (k not in FREE_FORM_FIELDS and _has_secret_field(v, depth=depth + 1))
            for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_has_secret_field(item, depth=depth + 1) for item in value[:100])
    return False


def request_fingerprint(request: HttpRequest) -> str:
    return hashlib.sha256(b"\n".join([request.path.encode(), request.body])).hexdigest()


def request_principal(request: HttpRequest) -> str | None:
    credential = request.headers.get("Authorization") or request.COOKIES.get("sessionid")
    if not credential:
        return None
    return hashlib.sha256(credential.encode()).hexdigest()


def _replay(principal: str, key: str, fingerprint: str) -> HttpResponse:
    record = IdempotencyRecord.objects.filter(principal=principal, key=key).first()
    if record is None:  # purged between our insert and this read: ask for a retry
        return JsonResponse({"detail": f"{HEADER} {key!r} is being reused; retry"}, status=409)
    if record.fingerprint != fingerprint:
        return JsonResponse(
            {"detail": f"{HEADER} {key!r} was already used for a different request", HEADER: [key]}, status=422
        )
    if record.status_code is None:
        return JsonResponse({"detail": f"a request with {HEADER} {key!r} is still in progress"}, status=409)
    if record.withheld:
        response: HttpResponse = JsonResponse(
            {
                "detail": (
                    f"the request with {HEADER} {key!r} succeeded; its answer held a secret, which is shown "
                    "only once and was not kept. Revoke what it created and make a new request."
                ),
                "id": record.resource_id or None,
                "status": record.status_code,
            },
            status=409,
        )
    else:
        response = HttpResponse(bytes(record.body), status=record.status_code, content_type=record.content_type)
    response["Idempotent-Replayed"] = "true"
    return response


def purge_expired_records() -> int:
    """Delete the records older than the lifetime; the number deleted."""
    return IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - lifetime()).delete()[0]
