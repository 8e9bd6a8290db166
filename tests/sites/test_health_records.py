"""Who writes health besides the probe: site creation and transitions, node transitions, new credentials;
and the one-open-alert-per-node rule held by the database itself."""

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from sites import services
from sites.choices import AlertKind, NodeHealth, NodeState, SiteHealth, SiteState
from sites.models import Alert, Node, Site
from tests.factories import NodeFactory

pytestmark = pytest.mark.django_db


def new_site(state: str = SiteState.PLANNED) -> Site:
    site = services.site_create(
        actor="t", source="test", code="TX-0412", name="Austin", region="us-south", timezone="UTC", state=state
    )
    return Site.objects.get(pk=site.pk)


def test_a_new_site_is_offline_while_planned_then_unreachable_until_probed() -> None:
    site = new_site()
    assert (site.health, site.health_reason) == (SiteHealth.OFFLINE, "planned: not in service yet")
    assert site.health_since is not None

    services.site_transition(site=site, to=SiteState.ACTIVE, actor="t", source="test")
    site.refresh_from_db()
    assert (site.health, site.health_reason) == (
        SiteHealth.UNREACHABLE,
        "no cluster endpoint or credentials are recorded",
    )

    services.cluster_set_credentials(
        cluster=site.cluster, actor="t", source="test", api_url="https://10.2.3.4:6443", token="t0ken"
    )
    site.refresh_from_db()
    assert (site.health, site.health_reason) == (SiteHealth.UNREACHABLE, "the cluster has not been probed yet")

    services.site_set_state(site=site, to=SiteState.OFFLINE, actor="t", source="test", reason="renovation")
    site.refresh_from_db()
    assert (site.health, site.health_reason) == (SiteHealth.OFFLINE, "marked offline")


def test_a_machine_a_workflow_saw_join_is_ready_at_once() -> None:
    node = NodeFactory(state=NodeState.JOINING)

    services.node_transition(node=node, to=NodeState.ACTIVE, actor="system:workflow", source="workflow")

    node.refresh_from_db()
    assert (node.health, node.health_reason) == (NodeHealth.READY, "")
    assert node.health_since is not None


def test_a_node_leaving_service_resolves_its_alert_and_the_site_stops_counting_it() -> None:
    site = new_site(SiteState.ACTIVE)
    node = NodeFactory(site=site, state=NodeState.CORDONED, health=NodeHealth.NOT_SEEN, health_since=timezone.now())
    alert = Alert.objects.create(kind=AlertKind.NODE_DOWN, site=site, node=node, message="m", opened_at=timezone.now())

    services.node_transition(node=node, to=NodeState.DRAINING, actor="t", source="test")  # still in service
    alert.refresh_from_db()
    assert alert.resolved_at is None

    Node.objects.filter(pk=node.pk).update(state=NodeState.WIPING)  # a wipe under way...
    services.node_transition(node=node, to=NodeState.WIPED, actor="t", source="workflow")  # ...finished
    alert.refresh_from_db()
    assert (alert.resolved_at is not None, alert.resolution) == (True, f"node {node.hostname} is wiped")


def test_the_database_holds_one_open_alert_per_node() -> None:
    node = NodeFactory()
    opened = {"kind": AlertKind.NODE_DOWN, "site": node.site, "node": node, "message": "m", "opened_at": timezone.now()}
    Alert.objects.create(**opened, resolved_at=timezone.now())  # resolved ones do not count
    Alert.objects.create(**opened)

    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(**opened)
