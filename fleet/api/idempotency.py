"""`Idempotency-Key` for POSTs under /api/v1/: a retried request gets the first answer, not a second effect.

The first request with a key inserts a record (the unique constraint decides races), runs, and stores
its answer when it succeeded (2xx). A retry with the same key and the same request replays that
answer with `Idempotent-Replayed: true`; the same key with a different request is refused (422); a
retry while the first is still running is refused (409). Failed requests (4xx/5xx) store nothing, so
the client may correct and retry with the same key. Records expire after a day.
"""

import datetime as dt
import hashlib
from collections.abc import Callable

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from fleet.api.models import IdempotencyRecord

HEADER = "Idempotency-Key"
LIFETIME = dt.timedelta(hours=24)
MAX_KEY_LENGTH = 255


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
        IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - LIFETIME).delete()
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(principal=principal, key=key, fingerprint=fingerprint)
        except IntegrityError:
            return _replay(principal, key, fingerprint)
        response = self.get_response(request)
        if 200 <= response.status_code < 300 and not response.streaming:
            record.status_code = response.status_code
            record.content_type = response.get("Content-Type", "")
            record.body = response.content
            record.save(update_fields=["status_code", "content_type", "body"])
        else:
            record.delete()
        return response


def request_fingerprint(request: HttpRequest) -> str:
    return hashlib.sha256(b"\n".join([request.path.encode(), request.body])).hexdigest()


def request_principal(request: HttpRequest) -> str | None:
    credential = request.headers.get("Authorization") or request.COOKIES.get("sessionid")
    if not credential:
        return None
    return hashlib.sha256(credential.encode()).hexdigest()


def _replay(principal: str, key: str, fingerprint: str) -> HttpResponse:
    record = IdempotencyRecord.objects.filter(principal=principal, key=key).first()
    if record is None:  # expired and deleted between our insert and this read: ask for a retry
        return JsonResponse({"detail": f"{HEADER} {key!r} is being reused; retry"}, status=409)
    if record.fingerprint != fingerprint:
        return JsonResponse(
            {"detail": f"{HEADER} {key!r} was already used for a different request", HEADER: [key]}, status=422
        )
    if record.status_code is None:
        return JsonResponse({"detail": f"a request with {HEADER} {key!r} is still in progress"}, status=409)
    response = HttpResponse(bytes(record.body), status=record.status_code, content_type=record.content_type)
    response["Idempotent-Replayed"] = "true"
    return response
