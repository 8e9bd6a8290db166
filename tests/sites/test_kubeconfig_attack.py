"""The kubeconfig that runs on the worker (security finding 1), tried for real.

A user with `change_cluster` saved a kubeconfig whose `exec` wrote `id` into a file as the worker's user
at the next probe. Each test here carries a live payload (the control test shows the official loader runs
it), tries it through a door (API, admin, a row planted in the database around the services, the probe
on a real Celery worker) and fails if the payload ran or the door let it in.
"""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client, override_settings
from kubernetes import client as k8s
from kubernetes.config.kube_config import KubeConfigLoader
from rest_framework.test import APIClient

from fleet.audit.models import AuditEvent
from sites import crypto, services
from sites.choices import ClusterReachability
from sites.clusters import ClusterRefused, SiteCluster
from sites.models import Cluster, Site
from sites.tasks import site_probe_task
from tests.factories import SiteFactory
from tests.sites.pki import b64, kubeconfig
from tests.support import free_port, wait_until
from tests.support.services import Worker

EXEC_CREDENTIAL = json.dumps(
    {"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", "status": {"token": "x"}}
)


def exec_user(marker: Path) -> dict[str, Any]:
    """A user whose `exec` plugin writes `id` into `marker`, then answers a valid ExecCredential."""
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "/bin/sh",
            "args": ["-c", f"id > {marker}; echo '{EXEC_CREDENTIAL}'"],
            "interactiveMode": "Never",
        }
    }


def exec_kubeconfig(marker: Path, server: str = "https://127.0.0.1:6443") -> str:
    return kubeconfig(server, user=exec_user(marker))


# Each refused field with a live value: what it would do on the worker if a loader honoured it.
def dangerous_kubeconfigs(tmp: Path) -> dict[str, tuple[str, str]]:
    """{case: (kubeconfig text, the field the refusal must name)}."""
    secret = tmp / "worker-secret"
    return {
        "exec": (exec_kubeconfig(tmp / "exec-ran"), "users[0].user.exec"),
        "auth-provider": (
            kubeconfig(user={"auth-provider": {"name": "gcp", "config": {"cmd-path": "/bin/sh", "cmd-args": "-c id"}}}),
            "users[0].user.auth-provider",
        ),
        "tokenFile": (kubeconfig(user={"tokenFile": str(secret)}), "users[0].user.tokenFile"),
        "client-certificate": (
            kubeconfig(user={"client-certificate": str(secret), "client-key": str(secret)}),
            "users[0].user.client-certificate",
        ),
        "certificate-authority": (
            kubeconfig(ca=None, cluster_extra={"certificate-authority": str(secret)}),
            "clusters[0].cluster.certificate-authority",
        ),
        "proxy-url": (kubeconfig(cluster_extra={"proxy-url": "http://attacker.example:3128"}), "proxy-url"),
        "tls-server-name": (kubeconfig(cluster_extra={"tls-server-name": "other.example"}), "tls-server-name"),
        "insecure-skip-tls-verify": (
            kubeconfig(ca=None, cluster_extra={"insecure-skip-tls-verify": True}),
            "insecure-skip-tls-verify",
        ),
        "impersonation": (kubeconfig(user={"token": "t", "as": "system:admin"}), "users[0].user.as"),
        "as-groups": (kubeconfig(user={"token": "t", "as-groups": ["system:masters"]}), "as-groups"),
        "basic-auth": (kubeconfig(user={"username": "admin", "password": "pw"}), "users[0].user.username"),
        "extensions": (kubeconfig(cluster_extra={"extensions": [{"name": "x", "extension": {}}]}), "extensions"),
    }


CASES = sorted(dangerous_kubeconfigs(Path("/nonexistent")))


def plant(site: Site, secret: Any, api_url: str = "https://127.0.0.1:6443") -> Cluster:
    """Write credentials straight into the row, around every service and validator."""
    Cluster.objects.filter(site=site).update(api_url=api_url, credentials_encrypted=crypto.encrypt(json.dumps(secret)))
    return Cluster.objects.select_related("site").get(site=site)


# --- the payload is live -------------------------------------------------------------------------------


def test_control_the_official_loader_runs_the_payloads(tmp_path: Path) -> None:
    """Not a test of edgefleet: proof that the payloads below are real, so their absence means something."""
    marker = tmp_path / "exec-ran"
    KubeConfigLoader(config_dict=yaml.safe_load(exec_kubeconfig(marker))).load_and_set(k8s.Configuration())
    assert "uid=" in marker.read_text()

    secret = tmp_path / "worker-secret"
    secret.write_text("worker-private-value")
    configuration = k8s.Configuration()
    doc = yaml.safe_load(kubeconfig(user={"tokenFile": str(secret)}))
    KubeConfigLoader(config_dict=doc).load_and_set(configuration)
    assert "worker-private-value" in str(configuration.api_key)


# --- refused on write ----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES)
def test_the_api_refuses_every_kubeconfig_field_outside_the_allow_list(
    admin_api: APIClient, tmp_path: Path, case: str
) -> None:
    site = SiteFactory()
    text, named = dangerous_kubeconfigs(tmp_path)[case]

    response = admin_api.put(f"/api/v1/sites/{site.code}/cluster/", {"kubeconfig": text}, format="json")

    assert response.status_code == 400, response.content
    message = " ".join(response.json()["kubeconfig"])
    assert named in message and "not accepted" in message
    assert Cluster.objects.get(site=site).credentials_encrypted == ""
    assert not AuditEvent.objects.filter(verb="set_credentials").exists()
    assert not (tmp_path / "exec-ran").exists()


@pytest.mark.django_db
def test_the_admin_form_refuses_the_exec_kubeconfig(admin_user: Any, tmp_path: Path) -> None:
    site = SiteFactory()
    staff = Client()
    staff.force_login(admin_user)

    response = staff.post(
        f"/admin/sites/cluster/{site.cluster.pk}/change/",
        {"api_url": "", "join_server_url": "", "kubeconfig": exec_kubeconfig(tmp_path / "exec-ran")},
    )

    assert response.status_code == 200  # the form again, with the refusal against the field
    assert "users[0].user.exec is not accepted: it would run a command on the workers" in response.content.decode()
    assert Cluster.objects.get(site=site).credentials_encrypted == ""
    assert not (tmp_path / "exec-ran").exists()


@pytest.mark.django_db
def test_fleet_import_refuses_an_exec_kubeconfig_beside_the_fleet_file(tmp_path: Path) -> None:
    from django.core.management import CommandError, call_command

    (tmp_path / "kubeconfigs").mkdir()
    (tmp_path / "kubeconfigs" / "TX-0412.yaml").write_text(exec_kubeconfig(tmp_path / "exec-ran"))
    entry = {"code": "TX-0412", "name": "Austin", "region": "us-south", "timezone": "America/Chicago"}
    (tmp_path / "fleet.json").write_text(json.dumps({"sites": [entry]}))

    with pytest.raises(CommandError, match=r"sites\[0\]: kubeconfig: users\[0\]\.user\.exec is not accepted"):
        call_command("fleet_import", str(tmp_path / "fleet.json"))

    assert not Site.objects.exists()
    assert not (tmp_path / "exec-ran").exists()


# --- planted in the database: never run at use ---------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES)
def test_a_planted_kubeconfig_is_refused_at_use_and_runs_nothing(tmp_path: Path, case: str) -> None:
    site = SiteFactory()
    text, named = dangerous_kubeconfigs(tmp_path)[case]
    cluster = plant(site, {"kubeconfig": text})

    with pytest.raises(ClusterRefused) as refused:
        SiteCluster.for_cluster(cluster)
    probed = services.site_probe(site=site)

    assert named in str(refused.value)
    assert probed.reachability == ClusterReachability.UNAUTHORIZED
    assert probed.last_error.startswith(f"the stored credentials of site {site.code} are refused and were not used")
    assert not (tmp_path / "exec-ran").exists()


class _Recorder(BaseHTTPRequestHandler):
    """An API server that writes down every Authorization header it is sent."""

    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.seen.append(self.headers.get("Authorization", ""))
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
def test_a_planted_token_file_does_not_send_a_worker_file_anywhere(
    tmp_path: Path, recorder: tuple[str, list[str]]
) -> None:
    url, seen = recorder
    secret = tmp_path / "worker-secret"
    secret.write_text("worker-private-value")
    site = SiteFactory()
    plant(site, {"kubeconfig": kubeconfig(url, ca=None, user={"tokenFile": str(secret)})}, api_url=url)

    probed = services.site_probe(site=site)

    assert probed.reachability == ClusterReachability.UNAUTHORIZED
    assert "tokenFile is not accepted: it would read a file on the workers" in probed.last_error
    assert seen == []  # nothing was sent, least of all the file


def nameless_context() -> str:
    doc = yaml.safe_load(kubeconfig())
    del doc["contexts"][0]["name"]
    return yaml.safe_dump(doc)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ({"kubeconfig": kubeconfig(ca="x")}, "certificate-authority-data is not a PEM certificate"),
        (
            {"kubeconfig": kubeconfig(ca=None, cluster_extra={"certificate-authority-data": "!!! not base64 !!!"})},
            "certificate-authority-data is not valid base64",
        ),
        ({"kubeconfig": kubeconfig(user={"client-certificate-data": "Zm9v", "client-key-data": "=="})}, "not a PEM"),
        ({"token": "t", "ca_data": "%%% not base64 %%%"}, "ca_data is not valid base64"),
        ({"token": "t", "ca_data": b64("hello")}, "ca_data is not a PEM certificate"),
        ({"token": "t", "ca_data": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, "not a PEM"),
        ({"token": "a b"}, "printable characters without spaces"),
        ({"token": "t", "exec": "/bin/sh"}, "neither a kubeconfig nor a token (they hold: exec, token)"),
        (["not", "a", "mapping"], "neither a kubeconfig nor a token"),
        ({"kubeconfig": "clusters: [unclosed"}, "not valid YAML"),
        ({"kubeconfig": nameless_context()}, "contexts[0] has no name"),
    ],
)
def test_planted_malformed_credentials_are_a_refusal_with_a_sentence(secret: Any, message: str) -> None:
    site = SiteFactory()
    cluster = plant(site, secret)

    with pytest.raises(ClusterRefused, match="refused and were not used") as refused:
        SiteCluster.for_cluster(cluster)

    assert message in str(refused.value)
    assert services.site_probe(site=site).reachability == ClusterReachability.UNAUTHORIZED


@pytest.mark.django_db
def test_planted_credentials_that_cannot_be_decrypted_are_a_refusal(settings: Any) -> None:
    site = SiteFactory()
    Cluster.objects.filter(site=site).update(api_url="https://k:6443", credentials_encrypted="gAAAAA-not-a-token")

    probed = services.site_probe(site=site)

    assert probed.reachability == ClusterReachability.UNAUTHORIZED
    assert "cannot be read" in probed.last_error and "FLEET_SECRET_KEYS" in probed.last_error


@pytest.mark.django_db
@override_settings(PRODUCTION=True)
@pytest.mark.parametrize(
    ("secret", "api_url", "message"),
    [
        ({"token": "t", "insecure_skip_tls_verify": True}, "https://k:6443", "insecure_skip_tls_verify is refused"),
        ({"token": "t"}, "http://k:6443", "plain http, refused in production"),
        ({"kubeconfig": kubeconfig("http://k:6443", ca=None)}, "http://k:6443", "plain http, refused in production"),
    ],
)
def test_planted_credentials_production_forbids_are_refused_at_use(secret: Any, api_url: str, message: str) -> None:
    site = SiteFactory()
    cluster = plant(site, secret, api_url=api_url)

    with pytest.raises(ClusterRefused, match=message):
        SiteCluster.for_cluster(cluster)


# --- the probe on a real worker --------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_beat_probe_on_a_real_worker_never_runs_a_planted_exec(
    celery_worker: Worker, redis_url: str, tmp_path: Path
) -> None:
    """The reported attack end to end: the exec kubeconfig sits in the row, the worker probes the site."""
    marker = tmp_path / "exec-ran"
    site = SiteFactory()
    server = f"https://127.0.0.1:{free_port()}"
    plant(site, {"kubeconfig": exec_kubeconfig(marker, server)}, api_url=server)

    site_probe_task.delay(site.pk)

    # Done when the probe recorded its outcome, or as soon as the payload ran (then the worker's task may
    # never record anything: the old loader's error escaped it).
    recorded = Cluster.objects.filter(site=site, last_probe_at__isnull=False)
    wait_until(lambda: marker.exists() or recorded.exists(), 60, "the worker's probe")
    cluster = Cluster.objects.get(site=site)
    assert not marker.exists(), f"the worker ran the kubeconfig's exec: {marker.read_text()}"
    assert cluster.reachability == ClusterReachability.UNAUTHORIZED
    assert cluster.last_error == (
        f"the stored credentials of site {site.code} are refused and were not used: kubeconfig: "
        "users[0].user.exec is not accepted: it would run a command on the workers; "
        "set them again through the API or the admin"
    )
