"""The OpenAPI schema is generated without warnings, so integrators' generated clients are clean."""

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_schema_generates_without_warnings() -> None:
    out = StringIO()
    call_command("spectacular", "--fail-on-warn", "--validate", stdout=out, stderr=StringIO())
    assert "openapi: 3" in out.getvalue()
