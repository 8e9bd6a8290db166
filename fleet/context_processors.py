"""Template context shared by the admin pages."""

from django.conf import settings
from django.http import HttpRequest


def fleet_env(request: HttpRequest) -> dict[str, str]:
    return {"fleet_env": settings.FLEET_ENV}
