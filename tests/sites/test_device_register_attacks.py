"""The device register endpoint against a machine that lies: refused tokens change nothing, a token of one site or
one machine never touches another's, refusals past the limit revoke the token and quarantines per token are capped
(a serial and a MAC are not secrets)."""

from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from fleet.audit.models import AuditEvent
from fleet.errors import Forbidden
from sites import devices, registration
from sites.choices import NodeState
from sites.models import BootstrapToken, Node, NodeCredential
from tests.factories import NodeFactory, SiteFactory
from tests.sites.test_device_register import MAC, _register, _token, _world

pytestmark = pytest.mark.django_db


# --- refused tokens: 403, nothing changes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda t: BootstrapToken.objects.filter(pk=t.pk).update(expires_at=timezone.now()), "expired"),
        (lambda t: devices.bootstrap_token_revoke(token=t, actor="test", source="test"), "revoked"),
        (lambda t: BootstrapToken.objects.filter(pk=t.pk).update(used_at=timezone.now()), "already used"),
    ],
    ids=["expired", "revoked", "used"],
)
def test_unusable_token_is_refused_and_nothing_changes(
    api: APIClient, ready_site: Any, spoil: Any, message: str
) -> None:
    NodeFactory(serial="SN-1", mac=MAC, site=ready_site, state=NodeState.PREREGISTERED)
    bootstrap_token = _token(ready_site)
    spoil(BootstrapToken.objects.get())
    before = _world()

    response = _register(api, bootstrap_token)

    assert response.status_code == 403
    assert message in response.json()["detail"]
    assert _world() == before


def test_unknown_token_is_refused_and_creates_nothing(api: APIClient, ready_site: Any) -> None:
    before = _world()

    response = _register(api, "efb_not-a-token", serial="SN-NEW")

    assert response.status_code == 403
    assert response.json()["detail"] == "the bootstrap token is not valid"
    assert _world() == before


def test_second_use_of_a_token_is_refused(api: APIClient, ready_site: Any) -> None:
    NodeFactory(serial="SN-1", mac=MAC, site=ready_site, state=NodeState.PREREGISTERED)
    bootstrap_token = _token(ready_site)
    assert _register(api, bootstrap_token).status_code == 200

    again = _register(api, bootstrap_token)

    assert again.status_code == 403
    assert "already used" in again.json()["detail"]


def test_retired_machine_is_refused_counted_and_left_alone(api: APIClient, ready_site: Any, site_wide_token: str):
    node = NodeFactory(serial="SN-1", mac=MAC, site=ready_site, state=NodeState.RETIRED)
    credentials = NodeCredential.objects.count()

    response = _register(api, site_wide_token)

    assert response.status_code == 403
    assert "retired" in response.json()["detail"]
    node.refresh_from_db()
    assert node.state == NodeState.RETIRED
    assert NodeCredential.objects.count() == credentials
    assert BootstrapToken.objects.get().refusals == 1
    assert AuditEvent.objects.filter(verb="register_refused", object_id=str(node.pk)).exists()


# --- attacks: a serial and a MAC are not secrets ------------------------------------------------------------


@pytest.fixture
def site_b_machine(db: None) -> Any:
    """A machine of another site, registered once (joining, with a live credential): what an attacker
    holding site A's token wants to disrupt or claim."""
    site_b = SiteFactory(code="CA-0001")
    node = NodeFactory(serial="SN-B", mac="52:54:00:bb:bb:01", site=site_b, state=NodeState.JOINING)
    devices.node_credentials_issue(node=node, actor="test", source="test")
    return node


@pytest.mark.parametrize("kind", ["bound", "site-wide"])
def test_a_token_of_site_a_never_touches_a_machine_of_site_b(
    api: APIClient, ready_site: Any, site_b_machine: Any, kind: str
) -> None:
    # Given a token of site A: for A's own machine, or for any machine of A
    NodeFactory(serial="SN-A", site=ready_site, state=NodeState.PREREGISTERED)
    _row, plaintext = devices.bootstrap_token_issue(
        site=ready_site, actor="test", source="test", any_serial=kind == "site-wide"
    )
    credential = NodeCredential.objects.get(node=site_b_machine)

    # When it is presented with the serial and MAC of B's machine
    response = _register(api, plaintext, serial="SN-B", mac=site_b_machine.mac)

    # Then it is refused, and B's machine keeps its state and its credential
    assert response.status_code == 403
    assert "CA-0001" not in response.json()["detail"]  # where the machine lives is not told either
    node = Node.objects.get(pk=site_b_machine.pk)
    assert (node.state, node.state_reason, node.facts) == (NodeState.JOINING, site_b_machine.state_reason, {})
    credential.refresh_from_db()
    assert credential.is_active
    assert not AuditEvent.objects.filter(verb="transition", object_id=str(node.pk)).exists()
    assert NodeCredential.objects.filter(node=node).count() == 1
    # And the refusal is audited and counted against the token
    refused = AuditEvent.objects.get(verb="register_refused")
    assert (refused.payload["serial"], refused.payload["token_site"], refused.source) == ("SN-B", "TX-0412", "device")
    token = BootstrapToken.objects.get()
    assert (token.refusals, token.quarantines, token.used_at) == (1, 0, None)


def test_a_token_bound_to_one_machine_refuses_another_of_the_same_site(api: APIClient, ready_site: Any) -> None:
    x = NodeFactory(serial="SN-X", mac="52:54:00:aa:00:0a", site=ready_site, state=NodeState.PREREGISTERED)
    y = NodeFactory(serial="SN-Y", mac="52:54:00:aa:00:0b", site=ready_site, state=NodeState.PREREGISTERED)
    plaintext = _token(ready_site, "SN-X")

    refused = _register(api, plaintext, serial="SN-Y", mac=y.mac)

    assert refused.status_code == 403
    assert "was not issued for machine SN-Y" in refused.json()["detail"]
    y.refresh_from_db()
    assert y.state == NodeState.PREREGISTERED
    assert not NodeCredential.objects.exists()
    assert BootstrapToken.objects.get().refusals == 1
    # The machine it was issued for still registers with it
    accepted = _register(api, plaintext, serial="SN-X", mac=x.mac)
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["node_id"] == x.pk


def test_refusals_past_the_limit_revoke_the_token(api: APIClient, ready_site: Any, settings: Any) -> None:
    settings.FLEET_BOOTSTRAP_MAX_REFUSALS = 3
    NodeFactory(serial="SN-1", mac=MAC, site=ready_site, state=NodeState.PREREGISTERED)
    plaintext = _token(ready_site, "SN-1")

    answers = [_register(api, plaintext, serial=f"SN-GUESS-{i}") for i in range(3)]

    assert [a.status_code for a in answers] == [403, 403, 403]
    assert "now revoked after 3 refused registrations" in answers[-1].json()["detail"]
    assert "revoked" not in answers[1].json()["detail"]
    token = BootstrapToken.objects.get()
    assert token.state == "revoked" and token.refusals == 3
    assert token.revoke_reason == "revoked after 3 refused registrations"
    assert AuditEvent.objects.filter(verb="revoke_bootstrap_token", payload__token=token.prefix).count() == 1
    # Even the machine it was issued for can no longer use it
    late = _register(api, plaintext)
    assert late.status_code == 403 and "was revoked" in late.json()["detail"]
    assert Node.objects.get(serial="SN-1").state == NodeState.PREREGISTERED
    assert not Node.objects.filter(serial__startswith="SN-GUESS").exists()  # a bound token records no strangers


def test_quarantines_per_token_are_capped(api: APIClient, ready_site: Any, settings: Any) -> None:
    settings.FLEET_BOOTSTRAP_MAX_QUARANTINES = 2
    settings.FLEET_BOOTSTRAP_MAX_REFUSALS = 50
    victim = NodeFactory(serial="SN-1", mac=MAC, site=ready_site, state=NodeState.PREREGISTERED)
    _row, plaintext = devices.bootstrap_token_issue(site=ready_site, actor="test", source="test", any_serial=True)

    answers = [_register(api, plaintext, serial=f"SN-JUNK-{i}", mac=f"52:54:00:cc:00:0{i}") for i in range(4)]
    spoofed = _register(api, plaintext, serial="SN-1", mac="52:54:00:ff:ff:ff")  # a MAC that is not its own

    assert [a.status_code for a in answers] == [403, 403, 403, 403]
    assert Node.objects.filter(serial__startswith="SN-JUNK", state=NodeState.QUARANTINED).count() == 2
    assert "quarantined" not in answers[3].json()["detail"]
    assert spoofed.status_code == 403
    victim.refresh_from_db()
    assert victim.state == NodeState.PREREGISTERED  # past the cap, not even a machine of its own site
    token = BootstrapToken.objects.get()
    assert (token.quarantines, token.refusals) == (2, 5)
    capped = AuditEvent.objects.filter(verb="register_refused", payload__reason__icontains="limit of 2 quarantines")
    assert capped.count() == 3


def test_the_service_refuses_like_the_api(ready_site: Any) -> None:
    NodeFactory(serial="SN-1", mac=MAC, site=ready_site, state=NodeState.PREREGISTERED)
    plaintext = _token(ready_site)

    with pytest.raises(Forbidden, match="not issued for machine SN-2"):
        registration.device_register(serial="SN-2", mac=MAC, bootstrap_token=plaintext, facts={})

    assert BootstrapToken.objects.get().refusals == 1  # counted although the service raised
