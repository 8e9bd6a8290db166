"""`fleet_import`: creates or updates sites, clusters and nodes idempotently, all or nothing."""

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from fleet.audit.models import AuditEvent
from sites.choices import NodeState
from sites.models import Cluster, Node, Site
from tests.sites.pki import b64, ca_pem

pytestmark = pytest.mark.django_db


def _fleet(tmp_path: Path, sites: list[dict]) -> Path:
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps({"sites": sites}))
    return path


def _site(code: str = "TX-0412", **extra: object) -> dict:
    return {
        "code": code,
        "name": "Austin Lamar",
        "region": "us-south",
        "timezone": "America/Chicago",
        "api_url": "http://127.0.0.1:8700/sites/" + code,
        "token": "tok-" + code,
        # A local repository under FLEET_REPO_ROOT: one the git policy allows in the embedded set-up.
        "repo_url": (Path(settings.REPO_ROOT) / f"{code}.git").as_uri(),
        "nodes": [
            {"serial": code + "-A", "hostname": code.lower() + "-a", "role": "server", "mac": "52:54:00:00:00:01"},
            {"serial": code + "-B", "hostname": code.lower() + "-b", "role": "agent", "mac": "52:54:00:00:00:02"},
        ],
        **extra,
    }


def test_import_creates_sites_clusters_and_adopts_nodes_as_active(tmp_path: Path) -> None:
    call_command("fleet_import", str(_fleet(tmp_path, [_site()])))

    site = Site.objects.get(code="TX-0412")
    assert site.state == "active"
    assert site.cluster.api_url == "http://127.0.0.1:8700/sites/TX-0412"
    assert site.cluster.credentials()["token"] == "tok-TX-0412"
    assert set(Node.objects.values_list("hostname", "state")) == {
        ("tx-0412-a", NodeState.ACTIVE),
        ("tx-0412-b", NodeState.ACTIVE),
    }


def test_import_twice_changes_nothing_the_second_time(tmp_path: Path) -> None:
    path = _fleet(tmp_path, [_site(), _site("TX-0413", nodes=[])])
    call_command("fleet_import", str(path))
    events = AuditEvent.objects.count()
    stored = list(Cluster.objects.order_by("pk").values_list("credentials_encrypted", flat=True))

    call_command("fleet_import", str(path))

    assert Site.objects.count() == 2
    assert Node.objects.count() == 2
    assert AuditEvent.objects.count() == events
    assert list(Cluster.objects.order_by("pk").values_list("credentials_encrypted", flat=True)) == stored


def test_import_updates_changed_fields_and_keeps_node_states(tmp_path: Path) -> None:
    call_command("fleet_import", str(_fleet(tmp_path, [_site()])))
    Node.objects.filter(serial="TX-0412-A").update(state=NodeState.BROKEN)

    call_command("fleet_import", str(_fleet(tmp_path, [_site(name="Austin South Lamar", token="rotated")])))

    site = Site.objects.get(code="TX-0412")
    assert site.name == "Austin South Lamar"
    assert site.cluster.credentials()["token"] == "rotated"
    assert Node.objects.get(serial="TX-0412-A").state == NodeState.BROKEN


def test_import_prefers_a_kubeconfig_beside_the_fleet_file(tmp_path: Path) -> None:
    (tmp_path / "kubeconfigs").mkdir()
    kubeconfig = (
        "apiVersion: v1\nkind: Config\ncurrent-context: s\n"
        "clusters: [{name: s, cluster: {server: 'https://127.0.0.1:8700/sites/TX-0412'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: s, context: {cluster: s, user: u}}]\n"
    )
    (tmp_path / "kubeconfigs" / "TX-0412.yaml").write_text(kubeconfig)

    call_command("fleet_import", str(_fleet(tmp_path, [_site()])))

    cluster = Cluster.objects.get(site__code="TX-0412")
    assert cluster.credentials() == {"kubeconfig": kubeconfig}
    assert cluster.api_url == "https://127.0.0.1:8700/sites/TX-0412"  # the server the client will talk to


def test_the_token_form_takes_the_simulators_certificate_authority_data(tmp_path: Path) -> None:
    call_command("fleet_import", str(_fleet(tmp_path, [_site(certificate_authority_data=b64(ca_pem()))])))

    assert Cluster.objects.get(site__code="TX-0412").credentials()["ca_data"] == b64(ca_pem())


def test_a_bad_ca_fails_the_import_naming_the_site(tmp_path: Path) -> None:
    path = _fleet(tmp_path, [_site(), _site("TX-0413", ca_data=b64("not a certificate"))])

    with pytest.raises(CommandError, match=r"sites\[1\]: ca_data is not a PEM certificate"):
        call_command("fleet_import", str(path))

    assert not Site.objects.exists()


def test_a_bad_entry_fails_the_whole_import(tmp_path: Path) -> None:
    path = _fleet(tmp_path, [_site(), _site("TX-0413", timezone="Mars/Olympus")])

    with pytest.raises(CommandError, match=r"sites\[1\]: timezone: 'Mars/Olympus' is not an IANA time zone"):
        call_command("fleet_import", str(path))

    assert not Site.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [("{", "is not JSON"), ('{"sites": 3}', 'a list "sites"'), ('{"sites": [{"name": "x"}]}', "string code")],
)
def test_malformed_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "fleet.json"
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("fleet_import", str(path))


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read"):
        call_command("fleet_import", str(tmp_path / "absent.json"))
