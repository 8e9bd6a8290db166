"""Encryption at rest and key rotation for cluster credentials."""

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from sites import services
from sites.models import Cluster
from tests.factories import SiteFactory

pytestmark = pytest.mark.django_db


def test_the_column_never_holds_the_plaintext() -> None:
    site = SiteFactory()

    services.cluster_set_credentials(
        cluster=site.cluster, actor="t", source="test", api_url="https://k3s:6443", token="plain-token-123"
    )

    raw = Cluster.objects.values_list("credentials_encrypted", flat=True).get(pk=site.cluster.pk)
    assert "plain-token-123" not in raw
    assert raw.startswith("gAAAAA")  # a Fernet token
    assert Cluster.objects.get(pk=site.cluster.pk).credentials()["token"] == "plain-token-123"


def test_rotate_secrets_re_encrypts_under_the_new_first_key(settings: object) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FLEET_SECRET_KEYS = [old]  # type: ignore[attr-defined]
    site = SiteFactory()
    services.cluster_set_credentials(
        cluster=site.cluster, actor="t", source="test", api_url="https://k:6443", token="t1"
    )

    settings.FLEET_SECRET_KEYS = [new, old]  # type: ignore[attr-defined]
    call_command("rotate_secrets")
    settings.FLEET_SECRET_KEYS = [new]  # type: ignore[attr-defined]

    assert Cluster.objects.get(pk=site.cluster.pk).credentials()["token"] == "t1"
    settings.FLEET_SECRET_KEYS = [old]  # type: ignore[attr-defined]
    with pytest.raises(ImproperlyConfigured, match="cannot be decrypted"):
        Cluster.objects.get(pk=site.cluster.pk).credentials()
