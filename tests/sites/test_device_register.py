"""`POST device/register/`: zero-touch registration, its refusals and quarantines, and that a refusal
writes nothing but the quarantine record, the token's refusal count and their audit events. The attacks
of a machine that knows a serial and a MAC (neither is secret) are tried at the end."""

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from fleet.audit.models import AuditEvent
from sites import devices
from sites.api.device import DeviceThrottle
from sites.choices import NodeState
from sites.crypto import hash_secret
from sites.models import BootstrapToken, Node, NodeCredential
from tests.factories import NodeFactory, SiteFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/device/register/"
MAC = "52:54:00:aa:bb:01"
FACTS = {"cpus": 4, "memory_mb": 16000, "model": "NUC13ANHi5", "hostname": "nuc-7"}


def _register(api: APIClient, token: str, serial: str = "SN-1", mac: str = MAC, **extra: Any) -> Any:
    return api.post(
        URL, {"serial": serial, "mac": mac, "bootstrap_token": token, "facts": FACTS, **extra}, format="json"
    )


def _world() -> tuple[int, int, list[tuple[str, str]], list[Any]]:
    """Everything a refused registration must leave alone (or change only by its quarantine)."""
    return (
        AuditEvent.objects.count(),
        NodeCredential.objects.count(),
        sorted(Node.objects.values_list("serial", "state")),
        sorted(BootstrapToken.objects.values_list("pk", "used_at", "refusals", "revoked_at")),
    )


def _token(site: Any, *serials: str) -> str:
    """A bootstrap token for `serials` (default: the site's machines waiting to register)."""
    _row, plaintext = devices.bootstrap_token_issue(
        site=site, actor="test", source="test", serials=list(serials) if serials else None
    )
    return plaintext


# --- success ------------------------------------------------------------------------------------------


def test_preregistered_machine_registers_and_becomes_joining(api: APIClient, ready_site: Any) -> None:
    node = NodeFactory(serial="SN-1", mac=MAC, site=ready_site, state=NodeState.PREREGISTERED, hostname="tx-a")

    response = _register(api, _token(ready_site), mac="52-54-00-AA-BB-01")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["node_id"] == node.pk
    assert body["k3s"]["server_url"] == "https://10.0.0.1:6443"
    assert body["k3s"]["token"] == "k3s-join-s3cret"
    assert body["k3s"]["node_name"] == "tx-a"
    assert "edgefleet.io/site=TX-0412" in body["k3s"]["node_labels"]
    node.refresh_from_db()
    assert node.state == NodeState.JOINING
    assert node.state_deadline is not None
    assert node.state_deadline > timezone.now() + dt.timedelta(minutes=25)
    assert node.facts == FACTS
    assert node.hardware_model == "NUC13ANHi5"
    token = BootstrapToken.objects.get()
    assert token.used_at is not None and token.used_by == node
    credential = NodeCredential.objects.get(node=node)
    assert credential.token_hash == hash_secret(body["node_token"])
    assert body["node_token"] not in credential.prefix + credential.token_hash
    register = AuditEvent.objects.get(verb="register")
    assert (register.actor_repr, register.source) == ("device:SN-1", "device")
    assert AuditEvent.objects.filter(verb="transition", actor_repr="device:SN-1").exists()


def test_a_replacement_preregistered_without_its_mac_learns_it_at_check_in(api: APIClient, ready_site: Any) -> None:
    node = NodeFactory(serial="SN-1", mac="", site=ready_site, state=NodeState.PREREGISTERED)

    response = _register(api, _token(ready_site))

    assert response.status_code == 200, response.content
    node.refresh_from_db()
    assert (node.state, node.mac) == (NodeState.JOINING, MAC)


def test_a_mac_less_replacement_claiming_a_mac_in_service_is_quarantined(api: APIClient, ready_site: Any) -> None:
    NodeFactory(mac=MAC, site=ready_site, state=NodeState.ACTIVE)
    node = NodeFactory(serial="SN-1", mac="", site=ready_site, state=NodeState.PREREGISTERED)

    response = _register(api, _token(ready_site))

    assert response.status_code == 403
    node.refresh_from_db()
    assert (node.state, node.mac) == (NodeState.QUARANTINED, "")


def test_wiped_machine_registers_again(api: APIClient, ready_site: Any) -> None:
    node = NodeFactory(serial="SN-1", mac=MAC, site=ready_site, state=NodeState.WIPED)

    response = _register(api, _token(ready_site))

    assert response.status_code == 200, response.content
    node.refresh_from_db()
    assert node.state == NodeState.JOINING


def test_joining_machine_whose_answer_was_lost_gets_a_new_credential(api: APIClient, ready_site: Any) -> None:
    NodeFactory(serial="SN-1", mac=MAC, site=ready_site, state=NodeState.PREREGISTERED)
    _first, first_plain = devices.bootstrap_token_issue(site=ready_site, actor="test", source="test")
    _second, second_plain = devices.bootstrap_token_issue(site=ready_site, actor="test", source="test")
    first = _register(api, first_plain).json()

    again = _register(api, second_plain)

    assert again.status_code == 200, again.content
    assert again.json()["node_token"] != first["node_token"]
    assert Node.objects.get(serial="SN-1").state == NodeState.JOINING
    active = NodeCredential.objects.filter(revoked_at__isnull=True)
    assert [c.token_hash for c in active] == [hash_secret(again.json()["node_token"])]
    assert NodeCredential.objects.count() == 2


# --- quarantine -------------------------------------------------------------------------------------------


def test_unknown_serial_with_a_site_wide_token_is_quarantined_at_the_token_site(
    api: APIClient, ready_site: Any, site_wide_token: str
) -> None:
    response = _register(api, site_wide_token, serial="SN-STRANGER")

    assert response.status_code == 403
    assert "quarantined" in response.json()["detail"]
    node = Node.objects.get(serial="SN-STRANGER")
    assert (node.site, node.state, node.mac, node.hostname) == (ready_site, NodeState.QUARANTINED, MAC, "nuc-7")
    assert "unknown serial" in node.state_reason
    assert AuditEvent.objects.filter(verb="quarantine", object_id=str(node.pk), source="device").exists()
    token = BootstrapToken.objects.get()
    assert (token.used_at, token.refusals, token.quarantines) == (None, 1, 1)
    assert not NodeCredential.objects.exists()


def test_unknown_serial_without_a_usable_hostname_gets_one_from_the_serial(
    api: APIClient, ready_site: Any, site_wide_token: str
) -> None:
    response = api.post(
        URL,
        {"serial": "ABC_123/x", "mac": MAC, "bootstrap_token": site_wide_token, "facts": {"hostname": "Not Valid!"}},
        format="json",
    )

    assert response.status_code == 403
    assert Node.objects.get(serial="ABC_123/x").hostname == "unknown-abc-123-x"


def test_machine_with_another_mac_is_quarantined(api: APIClient, ready_site: Any) -> None:
    node = NodeFactory(serial="SN-1", mac=MAC, site=ready_site, state=NodeState.PREREGISTERED)

    response = _register(api, _token(ready_site), mac="52:54:00:ff:ff:ff")

    assert response.status_code == 403
    assert MAC not in response.json()["detail"]  # the registered MAC is not told to whoever asks
    node.refresh_from_db()
    assert node.state == NodeState.QUARANTINED
    assert "52:54:00:ff:ff:ff" in node.state_reason and MAC in node.state_reason
    token = BootstrapToken.objects.get()
    assert (token.used_at, token.refusals, token.quarantines) == (None, 1, 1)


def test_quarantined_machine_retrying_is_refused_and_not_counted(api: APIClient, ready_site: Any) -> None:
    NodeFactory(serial="SN-1", mac=MAC, site=ready_site, state=NodeState.QUARANTINED, state_reason="MAC 52:54…")
    bootstrap_token = _token(ready_site, "SN-1")
    before = _world()

    response = _register(api, bootstrap_token)

    assert response.status_code == 403
    assert "staff must accept it" in response.json()["detail"]
    assert "52:54" not in response.json()["detail"]  # the reason is for staff
    assert _world() == before


# --- conflicts and bad input --------------------------------------------------------------------------------


def test_active_machine_cannot_register(api: APIClient, ready_site: Any) -> None:
    NodeFactory(serial="SN-1", mac=MAC, site=ready_site, state=NodeState.ACTIVE)
    bootstrap_token = _token(ready_site, "SN-1")
    before = _world()

    response = _register(api, bootstrap_token)

    assert response.status_code == 409
    assert "is active" in response.json()["detail"]
    assert _world() == before


def test_site_without_join_config_answers_409(api: APIClient) -> None:
    site = SiteFactory()
    NodeFactory(serial="SN-1", mac=MAC, site=site, state=NodeState.PREREGISTERED)
    _token, plaintext = devices.bootstrap_token_issue(site=site, actor="test", source="test")
    before = _world()

    response = _register(api, plaintext)

    assert response.status_code == 409
    assert "no K3s join configuration" in response.json()["detail"]
    assert _world() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mac": MAC, "bootstrap_token": "x"}, "serial"),
        ({"serial": "SN-1", "mac": "not-a-mac", "bootstrap_token": "x"}, "mac"),
        ({"serial": "SN-1", "mac": MAC}, "bootstrap_token"),
        ({"serial": "SN-1", "mac": MAC, "bootstrap_token": "x", "facts": ["a"]}, "facts"),
        ({"serial": "SN-1", "mac": MAC, "bootstrap_token": "x", "facts": {"blob": "x" * 20_000}}, "facts"),
        ({"serial": "S" * 65, "mac": MAC, "bootstrap_token": "x"}, "serial"),
        ({"serial": ["SN-1"], "mac": MAC, "bootstrap_token": "x"}, "serial"),
        ({"serial": "SN\u00001", "mac": MAC, "bootstrap_token": "x"}, "serial"),
        ({"serial": "   ", "mac": MAC, "bootstrap_token": "x"}, "serial"),
        ({"serial": "SN-1", "mac": MAC, "bootstrap_token": {"token": "x"}}, "bootstrap_token"),
        ({"serial": "SN-1", "mac": MAC, "bootstrap_token": "x", "facts": None}, "facts"),
    ],
)
def test_malformed_register_body_is_400_naming_the_field(api: APIClient, body: dict, field: str) -> None:
    response = api.post(URL, body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert field in response.json()["detail"]
    assert not Node.objects.exists()


def test_register_body_that_is_not_an_object_is_400(api: APIClient, db: None) -> None:
    assert api.post(URL, [1, 2], format="json").status_code == 400
    assert api.post(URL, "{not json", content_type="application/json").status_code == 400


def test_user_token_is_not_needed_and_get_is_not_allowed(api: APIClient, db: None) -> None:
    assert api.get(URL).status_code == 405


def test_registration_is_throttled(api: APIClient, db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DeviceThrottle, "THROTTLE_RATES", {"device": "3/min"})

    answers = [api.post(URL, {}, format="json").status_code for _ in range(4)]

    assert answers == [400, 400, 400, 429]
