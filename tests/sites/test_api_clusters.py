"""The clusters API: a cluster's credentials are write-only and encrypted at rest, bad ones are 400 naming the field,
production refuses plain HTTP and skipped verification, and probing an unknown site is 404."""

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from django.test import override_settings
from rest_framework.test import APIClient

from fleet.audit.models import AuditEvent
from sites.models import Cluster
from tests.factories import SiteFactory
from tests.sites.pki import b64, ca_pem, issue, kubeconfig
from tests.sites.test_api import KUBECONFIG

pytestmark = pytest.mark.django_db


# --- clusters ------------------------------------------------------------------------------------------


def test_cluster_credentials_are_write_only_and_encrypted_at_rest(admin_api: APIClient) -> None:
    site = SiteFactory()

    response = admin_api.put(f"/api/v1/sites/{site.code}/cluster/", {"kubeconfig": KUBECONFIG}, format="json")

    assert response.status_code == 200, response.content
    assert "kube-s3cret" not in response.content.decode()
    assert response.json()["api_url"] == "https://10.1.2.3:6443"
    assert response.json()["has_credentials"] is True
    stored = Cluster.objects.values_list("credentials_encrypted", flat=True).get(site=site)
    assert "kube-s3cret" not in stored and "BEGIN" not in stored and "clusters" not in stored
    assert Cluster.objects.get(site=site).credentials()["kubeconfig"] == KUBECONFIG
    assert "kube-s3cret" not in admin_api.get(f"/api/v1/sites/{site.code}/").content.decode()
    assert "kube-s3cret" not in str(AuditEvent.objects.values_list("payload", flat=True))


def assert_credentials_refused(admin_api: APIClient, body: dict, field: str, message: str) -> None:
    """PUT `body` as a new site's cluster credentials: a 400 whose `field` says `message`, and nothing stored."""
    site = SiteFactory()

    response = admin_api.put(f"/api/v1/sites/{site.code}/cluster/", body, format="json")

    assert response.status_code == 400, response.content
    assert message in str(response.json()[field]), response.json()
    assert Cluster.objects.get(site=site).credentials_encrypted == ""


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"kubeconfig": "clusters: [unclosed"}, "kubeconfig", "not valid YAML"),
        ({"kubeconfig": "kind: Config\ncontexts: []\n"}, "kubeconfig", "must list exactly one cluster (found 0)"),
        ({"kubeconfig": KUBECONFIG.replace("https://10.1.2.3:6443", "10.1.2.3")}, "kubeconfig", "not an http(s) URL"),
        ({"token": "abc"}, "api_url", "required with a token"),
        ({"api_url": "https://x:6443", "token": "abc", "kubeconfig": KUBECONFIG}, "kubeconfig", "not both"),
        ({}, "kubeconfig", "give a kubeconfig"),
        ({"api_url": "not a url", "token": "abc"}, "api_url", "not an http(s) URL"),
    ],
)
def test_bad_cluster_credentials_are_400(admin_api: APIClient, body: dict, field: str, message: str) -> None:
    assert_credentials_refused(admin_api, body, field, message)


def _edited(change: "Callable[[dict[str, Any]], None]") -> str:
    doc = yaml.safe_load(KUBECONFIG)
    change(doc)
    return yaml.safe_dump(doc)


CLIENT_CERT, CLIENT_KEY = issue("edgefleet-client")
NOT_A_KEY = "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"
OTHER_CERT, OTHER_KEY = issue("someone-else")
ENCRYPTED_KEY = (
    serialization.load_pem_private_key(CLIENT_KEY.encode(), password=None)
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    .decode()
)


def _client_cert_user(cert: str = CLIENT_CERT, key: str = CLIENT_KEY) -> dict[str, str]:
    return {"client-certificate-data": b64(cert), "client-key-data": b64(key)}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        # base64 and PEM are checked before anything is stored
        ({"kubeconfig": kubeconfig(ca=None, cluster_extra={"certificate-authority-data": "@@@"})},
         "kubeconfig", "clusters[0].cluster.certificate-authority-data is not valid base64"),
        ({"kubeconfig": kubeconfig(ca="not a certificate")}, "kubeconfig", "is not a PEM certificate"),
        ({"kubeconfig": kubeconfig(user={"client-certificate-data": b64(CLIENT_CERT)})},
         "kubeconfig", "needs a token, or client-certificate-data with client-key-data"),
        ({"kubeconfig": kubeconfig(user=_client_cert_user(key=NOT_A_KEY))},
         "kubeconfig", "client-key-data is not a PEM private key"),
        ({"kubeconfig": kubeconfig(user=_client_cert_user(key=OTHER_KEY))},
         "kubeconfig", "client-key-data is not the key of the client certificate"),
        ({"kubeconfig": kubeconfig(user=_client_cert_user(key=ENCRYPTED_KEY))}, "kubeconfig", "an encrypted key"),
        ({"kubeconfig": kubeconfig(user={"token": "t", **_client_cert_user()})}, "kubeconfig", "give one of them"),
        ({"api_url": "https://x:6443", "token": "abc", "ca_data": "%%%"}, "ca_data", "ca_data is not valid base64"),
        ({"api_url": "https://x:6443", "token": "abc", "ca_data": b64("hello")}, "ca_data", "not a PEM certificate"),
        ({"api_url": "https://x:6443", "token": "a\nb"}, "token", "printable characters without spaces"),
        # the shape: one cluster, one user, one named context that joins them
        ({"kubeconfig": _edited(lambda d: d["contexts"][0].pop("name"))}, "kubeconfig", "contexts[0] has no name"),
        ({"kubeconfig": _edited(lambda d: d["contexts"][0].update(context=["x"]))}, "kubeconfig", "no context mapping"),
        ({"kubeconfig": _edited(lambda d: d["clusters"].append(d["clusters"][0]))},
         "kubeconfig", "clusters must list exactly one cluster (found 2)"),
        ({"kubeconfig": _edited(lambda d: d["contexts"][0]["context"].update(user="nobody"))},
         "kubeconfig", "names user 'nobody'"),
        ({"kubeconfig": _edited(lambda d: d.update({"current-context": "elsewhere"}))},
         "kubeconfig", "current-context 'elsewhere'"),
        ({"kubeconfig": _edited(lambda d: d.update(preferences={"colors": True}))}, "kubeconfig", "preferences"),
        ({"kubeconfig": "- just\n- a list\n"}, "kubeconfig", "a YAML mapping of kind Config"),
        ({"kubeconfig": KUBECONFIG, "api_url": "https://elsewhere:6443"}, "api_url", "is not the kubeconfig's server"),
        ({"kubeconfig": KUBECONFIG, "ca_data": ca_pem()}, "ca_data", "goes with a token, not a kubeconfig"),
        ({"kubeconfig": kubeconfig("https://user:pw@10.1.2.3:6443")}, "kubeconfig", "must not carry a user name"),
    ],
)  # fmt: skip
def test_bad_cluster_credentials_are_400_naming_the_field(
    admin_api: APIClient, body: dict, field: str, message: str
) -> None:
    assert_credentials_refused(admin_api, body, field, message)


@override_settings(PRODUCTION=True)
@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"kubeconfig": kubeconfig("http://10.1.2.3:6443", ca=None)},
         "kubeconfig", "plain http, refused in production"),
        ({"api_url": "http://10.1.2.3:6443", "token": "t"}, "api_url", "plain http, refused in production"),
        ({"api_url": "https://10.1.2.3:6443", "token": "t", "insecure_skip_tls_verify": True},
         "insecure_skip_tls_verify", "insecure_skip_tls_verify is refused in production"),
    ],
)  # fmt: skip
def test_production_refuses_plain_http_and_skipped_verification(
    admin_api: APIClient, body: dict, field: str, message: str
) -> None:
    assert_credentials_refused(admin_api, body, field, message)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"kubeconfig": kubeconfig("https://10.1.2.3:6443/", user=_client_cert_user())}, "kubeconfig"),
        ({"kubeconfig": kubeconfig("http://10.1.2.3:6443", ca=None)}, "kubeconfig"),  # not production
        ({"api_url": "https://10.1.2.3:6443", "token": "t", "ca_data": ca_pem()}, "token"),
        ({"api_url": "https://10.1.2.3:6443", "token": "t", "ca_data": b64(ca_pem())}, "token"),
        ({"api_url": "https://10.1.2.3:6443", "token": "t", "insecure_skip_tls_verify": True}, "token"),
    ],
)
def test_inline_credentials_are_accepted(admin_api: APIClient, body: dict, kind: str) -> None:
    site = SiteFactory()

    response = admin_api.put(f"/api/v1/sites/{site.code}/cluster/", body, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["has_credentials"] is True
    assert not response.json()["api_url"].endswith("/")
    assert AuditEvent.objects.get(verb="set_credentials").payload["kind"] == kind


def test_probe_unknown_site_is_404(admin_api: APIClient) -> None:
    assert admin_api.post("/api/v1/sites/ZZ-0000/probe/").status_code == 404
