"""The node and site state machines: every change goes through the transition tables."""

import pytest

from fleet.audit.models import AuditEvent
from fleet.errors import Conflict, Invalid
from sites import services
from sites.choices import NODE_TRANSITIONS, SITE_TRANSITIONS, NodeState, SiteState
from tests.factories import NodeFactory, SiteFactory


def test_every_node_state_has_a_row_and_targets_are_states() -> None:
    assert set(NODE_TRANSITIONS) == set(NodeState.values)
    for targets in NODE_TRANSITIONS.values():
        assert targets <= set(NodeState.values)


def test_every_site_state_has_a_row_and_targets_are_states() -> None:
    assert set(SITE_TRANSITIONS) == set(SiteState.values)
    for targets in SITE_TRANSITIONS.values():
        assert targets <= set(SiteState.values)


def test_retired_and_decommissioned_are_final() -> None:
    assert NODE_TRANSITIONS[NodeState.RETIRED] == frozenset()
    assert SITE_TRANSITIONS[SiteState.DECOMMISSIONED] == frozenset()


@pytest.mark.django_db
@pytest.mark.parametrize(("start", "to"), [(s, t) for s, targets in NODE_TRANSITIONS.items() for t in targets])
def test_allowed_node_transitions_are_applied_and_audited(start: str, to: str) -> None:
    node = NodeFactory(state=start)

    node = services.node_transition(node=node, to=to, actor="test", source="test", reason="because")

    assert node.state == to
    assert node.state_reason == "because"
    event = AuditEvent.objects.get(object_type="sites.node", object_id=str(node.pk), verb="transition")
    assert event.payload == {"from": start, "to": to, "reason": "because"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("start", "to"),
    [(s, t) for s in NodeState.values for t in NodeState.values if t != s and t not in NODE_TRANSITIONS[s]],
)
def test_forbidden_node_transitions_raise_conflict_and_change_nothing(start: str, to: str) -> None:
    node = NodeFactory(state=start)

    with pytest.raises(Conflict, match=f"is {start}; it cannot become {to}"):
        services.node_transition(node=node, to=to, actor="test", source="test")

    node.refresh_from_db()
    assert node.state == start
    assert not AuditEvent.objects.filter(verb="transition").exists()


@pytest.mark.django_db
def test_transition_to_the_same_state_is_a_no_op() -> None:
    node = NodeFactory(state=NodeState.ACTIVE)

    services.node_transition(node=node, to=NodeState.ACTIVE, actor="test", source="test")

    assert not AuditEvent.objects.filter(verb="transition").exists()


@pytest.mark.django_db
def test_unknown_node_state_is_invalid() -> None:
    with pytest.raises(Invalid, match="'exploded' is not a node state"):
        services.node_transition(node=NodeFactory(), to="exploded", actor="test", source="test")


@pytest.mark.django_db
def test_site_transition_checks_the_table() -> None:
    site = SiteFactory(state=SiteState.DECOMMISSIONED)

    with pytest.raises(Conflict, match="decommissioned; it cannot become active"):
        services.site_transition(site=site, to=SiteState.ACTIVE, actor="test", source="test")
