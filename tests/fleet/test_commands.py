"""Management commands of the project package (found because `fleet` is an installed app)."""

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command


@pytest.mark.django_db
def test_ensure_admin_creates_a_superuser_and_keeps_its_password(tmp_path: Path, settings: Any) -> None:
    settings.DATA_DIR = tmp_path
    out = StringIO()

    call_command("ensure_admin", stdout=out)
    call_command("ensure_admin", stdout=StringIO())

    password = (tmp_path / "admin-password").read_text().strip()
    assert f"password: {password}" in out.getvalue()
    assert (tmp_path / "admin-password").stat().st_mode & 0o077 == 0
    user = authenticate(username="admin", password=password)
    assert user is not None and user.is_superuser
    assert get_user_model().objects.filter(username="admin").count() == 1
