"""Probing a site's cluster: the official client reads /version with the site's decrypted credentials.

The cluster here is a small HTTP server started by the test that answers /version like a K3s API
server and checks the bearer token, so a wrong credential is refused as a real one would be; over TLS
with a test CA, it also checks client certificates, so the inline kubeconfig data is proven to be used.
"""

import ssl
import stat
import tempfile
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sites import services
from sites.choices import ClusterReachability
from sites.models import Cluster
from tests.factories import SiteFactory
from tests.sites.pki import b64, ca_pem, issue, kubeconfig
from tests.support import wait_until
from tests.support.http import JsonHandler, serving

TOKEN = "s3cret-token"
VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.4+k3s1",
    "gitCommit": "a562d090b0ea1a2a5a6ec3ba1e4b1fe2a41ae8a4",
    "gitTreeState": "clean",
    "buildDate": "2024-12-18T22:34:11Z",
    "goVersion": "go1.22.9",
    "compiler": "gc",
    "platform": "linux/amd64",
}


NODES = {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []}


class _K3sVersionHandler(JsonHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._answer(401, {"kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401})
        elif self.path.rstrip("/") == "/version":
            self._answer(200, VERSION)
        elif self.path.split("?")[0].rstrip("/") == "/api/v1/nodes":
            self._answer(200, NODES)
        else:
            self._answer(404, {"kind": "Status", "code": 404})


@pytest.fixture
def k3s_api() -> Iterator[str]:
    with serving(_K3sVersionHandler) as server:
        yield server.url


def _site_with_cluster(api_url: str, token: str = TOKEN):  # type: ignore[no-untyped-def]
    site = SiteFactory()
    services.cluster_set_credentials(cluster=site.cluster, actor="test", source="test", api_url=api_url, token=token)
    return site


@pytest.mark.django_db
def test_probe_records_version_and_contact(k3s_api: str) -> None:
    site = _site_with_cluster(k3s_api)

    cluster = services.site_probe(site=site)

    assert cluster.reachability == ClusterReachability.REACHABLE
    assert cluster.k3s_version == "v1.31.4+k3s1"
    assert cluster.last_contact_at is not None


@pytest.mark.django_db
def test_probe_with_refused_credentials_is_unauthorized(k3s_api: str) -> None:
    site = _site_with_cluster(k3s_api, token="wrong")

    cluster = services.site_probe(site=site)

    assert cluster.reachability == ClusterReachability.UNAUTHORIZED
    assert cluster.last_error.startswith(f"the cluster at {k3s_api[7:]} refuses our credentials (HTTP 401) since ")
    assert "401" in cluster.last_error_detail and "Unauthorized" in cluster.last_error_detail
    assert cluster.last_contact_at is None


@pytest.mark.django_db
def test_probe_of_a_closed_port_is_unreachable_and_bounded() -> None:
    from tests.support import free_port

    port = free_port()
    site = _site_with_cluster(f"http://127.0.0.1:{port}")

    cluster = services.site_probe(site=site)

    assert cluster.reachability == ClusterReachability.UNREACHABLE
    assert cluster.last_error.startswith(f"cannot reach the cluster at 127.0.0.1:{port} (connection refused) since ")
    assert "MaxRetryError" in cluster.last_error_detail  # the raw error, behind the sentence


@pytest.mark.django_db(transaction=True)
@pytest.mark.integration
def test_probe_through_the_api_is_carried_out_by_a_real_worker(celery_worker, admin_api, k3s_api: str) -> None:  # type: ignore[no-untyped-def]
    site = _site_with_cluster(k3s_api)

    response = admin_api.post(f"/api/v1/sites/{site.code}/probe/")

    assert response.status_code == 202, response.content
    cluster = wait_until(
        lambda: Cluster.objects.filter(site=site, last_probe_at__isnull=False).first(),
        30,
        "the worker's probe recorded",
    )
    assert cluster.reachability == ClusterReachability.REACHABLE
    assert cluster.k3s_version == "v1.31.4+k3s1"


# --- over TLS: the inline CA and client certificate are what the client uses ------------------------------


class _MutualTLSHandler(_K3sVersionHandler):
    """Answers /version to a client that presented a certificate from the test CA (the socket checks it)."""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.connection.getpeercert() and self.path.rstrip("/") == "/version":  # type: ignore[attr-defined]
            self._answer(200, VERSION)
        elif self.connection.getpeercert() and self.path.startswith("/api/v1/nodes"):  # type: ignore[attr-defined]
            self._answer(200, NODES)
        else:
            super().do_GET()


@pytest.fixture
def k3s_tls_api() -> Iterator[str]:
    """An https API server for 127.0.0.1 signed by the test CA; a client certificate is optional, and when
    one is presented it must come from the test CA."""
    cert, key = issue("k3s-api", server=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "server.pem").write_text(cert + key)
        context.load_cert_chain(Path(tmp) / "server.pem")
    context.load_verify_locations(cadata=ca_pem())
    context.verify_mode = ssl.CERT_OPTIONAL
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MutualTLSHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
def test_a_client_certificate_kubeconfig_reaches_a_cluster_that_checks_it(
    k3s_tls_api: str, settings: Any, tmp_path: Path
) -> None:
    settings.DATA_DIR = tmp_path
    cert, key = issue("edgefleet-client")
    site = SiteFactory()
    user = {"client-certificate-data": b64(cert), "client-key-data": b64(key)}
    services.cluster_set_credentials(
        cluster=site.cluster, actor="test", source="test", kubeconfig=kubeconfig(k3s_tls_api, user=user)
    )

    cluster = services.site_probe(site=site)

    assert cluster.reachability == ClusterReachability.REACHABLE, cluster.last_error
    files = {f.suffix: f for f in (tmp_path / "kube-tls").iterdir()}
    assert sorted(files) == [".crt", ".pem"]  # the CA, and the certificate with its key
    assert stat.S_IMODE((tmp_path / "kube-tls").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files.values())
    assert "PRIVATE KEY" in files[".pem"].read_text() and "PRIVATE KEY" not in files[".crt"].read_text()


@pytest.mark.django_db
def test_the_inline_ca_is_the_one_the_server_is_checked_against(
    k3s_tls_api: str, settings: Any, tmp_path: Path
) -> None:
    settings.DATA_DIR = tmp_path
    trusting, distrusting = SiteFactory(), SiteFactory()
    services.cluster_set_credentials(
        cluster=trusting.cluster, actor="t", source="test", api_url=k3s_tls_api, token=TOKEN, ca_data=ca_pem()
    )
    other_ca, _ = issue("not-the-ca")  # a well-formed certificate that did not sign the server's
    services.cluster_set_credentials(
        cluster=distrusting.cluster, actor="t", source="test", api_url=k3s_tls_api, token=TOKEN, ca_data=b64(other_ca)
    )

    assert services.site_probe(site=trusting).reachability == ClusterReachability.REACHABLE
    refused = services.site_probe(site=distrusting)
    assert refused.reachability == ClusterReachability.UNREACHABLE
    assert refused.last_error.startswith(f"cannot reach the cluster at {k3s_tls_api[8:]} (its TLS certificate is not")
    assert "CERTIFICATE_VERIFY_FAILED" in refused.last_error_detail
