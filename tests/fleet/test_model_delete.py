"""fleet.updates.model_delete through the services that wrap it: a row their rule lets go is deleted with its
audit row; a row their rule keeps stays, with nothing audited. Real rows on the real database."""

import pytest

from fleet.audit.choices import Source
from fleet.audit.models import AuditEvent
from fleet.errors import Conflict
from sites import services as site_services
from sites.choices import NodeState
from sites.models import Node, Site
from tests.factories import NodeFactory, SiteFactory


@pytest.mark.django_db
def test_a_deleted_row_leaves_its_audit_row() -> None:
    node: Node = NodeFactory(state=NodeState.PREREGISTERED, serial="SN-DEL-1")

    site_services.node_delete(node=node, actor="alice", source=Source.ADMIN)

    assert not Node.objects.filter(pk=node.pk).exists()
    event = AuditEvent.objects.get(verb="delete")
    assert (event.actor_repr, event.source, event.payload) == ("alice", "admin", {"serial": "SN-DEL-1"})


@pytest.mark.django_db
def test_a_row_the_rule_keeps_stays_and_nothing_is_audited() -> None:
    node: Node = NodeFactory(state=NodeState.ACTIVE)

    with pytest.raises(Conflict, match="only a pre-registered node can be deleted"):
        site_services.node_delete(node=node, actor="alice", source=Source.ADMIN)
    with pytest.raises(Conflict, match="decommission it instead of deleting it"):
        site_services.site_delete(site=node.site, actor="alice", source=Source.ADMIN)

    assert Node.objects.filter(pk=node.pk).exists() and Site.objects.filter(pk=node.site_id).exists()
    assert not AuditEvent.objects.filter(verb="delete").exists()


@pytest.mark.django_db
def test_a_site_without_machines_is_deleted_with_what_it_was() -> None:
    site: Site = SiteFactory(name="Gone")

    site_services.site_delete(site=site, actor="alice", source=Source.API)

    assert not Site.objects.filter(pk=site.pk).exists()
    assert AuditEvent.objects.get(verb="delete").payload["name"] == "Gone"
