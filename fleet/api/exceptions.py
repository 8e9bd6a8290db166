"""Maps domain errors and Django validation errors to JSON answers with a readable `detail`."""

from typing import Any

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from fleet.errors import FleetError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus FleetError (its own status), Django ValidationError (400), a request body over
    Django's upload limits (400) and IntegrityError (409)."""
    if isinstance(exc, FleetError):
        body: dict[str, Any] = {"detail": exc.message}
        body.update(exc.errors)
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            errors = {field: [str(m) for m in msgs] for field, msgs in exc.message_dict.items()}
            first = next(iter(errors.items()))
            return Response({"detail": f"{first[0]}: {first[1][0]}", **errors}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"detail": "; ".join(exc.messages)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig | TooManyFieldsSent | TooManyFilesSent):
        # Django refuses these before any parser runs; answered here so the refusal is JSON like the rest.
        return Response({"detail": f"the request is too large: {exc}"}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, IntegrityError):
        # The services check uniqueness first; this only answers a race between two requests.
        return Response({"detail": "conflicts with an existing object"}, status=status.HTTP_409_CONFLICT)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" not in response.data:
        fields = ", ".join(f"{k}: {_first(v)}" for k, v in response.data.items())
        response.data = {"detail": f"invalid input ({fields})", **response.data}
    elif response is not None and isinstance(response.data, list):
        response.data = {"detail": "; ".join(str(x) for x in response.data)}
    return response


def _first(value: Any) -> str:
    if isinstance(value, list) and value:
        return _first(value[0])
    if isinstance(value, dict) and value:
        key, inner = next(iter(value.items()))
        return f"{key}: {_first(inner)}"
    return str(value)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's handler404: JSON under /api/ (a path no route matches, e.g. a malformed id), HTML elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "not found: no such endpoint or object"}, status=404)
    return page_not_found(request, exception)
