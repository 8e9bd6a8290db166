"""The shared service plumbing in fleet: state_transition, model_update, validated(), the field lists and
the Source enum. Real rows on the real database; the apps' own rules are in their own tests."""

import datetime as dt
from typing import Any

import pytest
from rest_framework import exceptions, serializers

from fleet.api.inputs import validated
from fleet.audit.choices import Source, SystemActor
from fleet.audit.models import AuditEvent
from fleet.errors import Conflict, Invalid
from fleet.transitions import StateMachine, state_transition
from fleet.updates import model_update
from rollouts import services as rollout_services
from rollouts.admin.catalog import ApplicationForm, ReleaseForm, RolloutPlanForm
from rollouts.api.serializers import ApplicationWriteSerializer, ReleaseWriteSerializer, RolloutPlanWriteSerializer
from sites import services as site_services
from sites.admin.node import NodeForm
from sites.admin.site import SiteForm
from sites.api.serializers import NodeWriteSerializer, SiteWriteSerializer
from sites.choices import NODE_TRANSITIONS, NodeState
from sites.models import Node, Site
from tests.factories import NodeFactory, SiteFactory

MACHINE: StateMachine[Node] = StateMachine(
    table=NODE_TRANSITIONS,
    states=NodeState.values,
    kind="node",
    subject=lambda node: f"node {node.hostname}",
    changed_at="state_changed_at",
)
SITE_EDITABLE = ("name", "region", "labels")


# --- state_transition -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_refused_move_is_a_conflict_naming_the_state_and_writes_nothing() -> None:
    node: Node = NodeFactory(state=NodeState.PREREGISTERED, hostname="pos-1")
    stored = Node.objects.get(pk=node.pk)

    with pytest.raises(Conflict, match="node pos-1 is preregistered; it cannot become active") as refused:
        state_transition(node, to=NodeState.ACTIVE, machine=MACHINE, actor="test", source=Source.COMMAND)

    assert refused.value.field == "state"
    after = Node.objects.get(pk=node.pk)
    assert (after.state, after.state_changed_at, after.updated_at) == (
        stored.state,
        stored.state_changed_at,
        stored.updated_at,
    )
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_a_name_that_is_no_state_is_invalid_naming_the_field() -> None:
    node: Node = NodeFactory()

    with pytest.raises(Invalid, match="'flying' is not a node state") as refused:
        state_transition(node, to="flying", machine=MACHINE, actor="test", source=Source.COMMAND)

    assert refused.value.field == "state"


@pytest.mark.django_db
def test_an_allowed_move_saves_state_time_and_the_apps_fields_then_audits_it() -> None:
    node: Node = NodeFactory(state=NodeState.PREREGISTERED)
    seen: list[tuple[str, str]] = []

    def record(row: Node, now: dt.datetime) -> list[str]:
        row.state_reason = "shipped"
        return ["state_reason"]

    def after(row: Node, before: str) -> None:
        seen.append((before, Node.objects.get(pk=row.pk).state))  # saved before `after` runs

    moved = state_transition(
        node,
        to=NodeState.JOINING,
        machine=MACHINE,
        actor=SystemActor.WORKFLOW,
        source=Source.WORKFLOW,
        reason="go",
        record=record,
        after=after,
    )

    stored = Node.objects.get(pk=node.pk)
    assert (stored.state, stored.state_reason) == (NodeState.JOINING, "shipped")
    assert stored.state_changed_at == moved.state_changed_at is not None
    assert seen == [(NodeState.PREREGISTERED, NodeState.JOINING)]
    event = AuditEvent.objects.get()
    assert (event.verb, event.actor_repr, event.source) == ("transition", "system:workflow", "workflow")
    assert event.payload == {"from": "preregistered", "to": "joining", "reason": "go"}


@pytest.mark.django_db
def test_a_check_that_refuses_writes_nothing() -> None:
    node: Node = NodeFactory(state=NodeState.ACTIVE)

    def people_may_not(row: Node) -> None:
        raise Invalid(f"not by hand from {row.state}", field="state")

    with pytest.raises(Invalid, match="not by hand from active"):
        state_transition(
            node, to=NodeState.CORDONED, machine=MACHINE, actor="test", source=Source.API, check=people_may_not
        )

    assert Node.objects.get(pk=node.pk).state == NodeState.ACTIVE
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_moving_to_the_current_state_writes_nothing_and_calls_nothing() -> None:
    node: Node = NodeFactory(state=NodeState.ACTIVE)
    called: list[str] = []

    state_transition(
        node,
        to=NodeState.ACTIVE,
        machine=MACHINE,
        actor="test",
        source=Source.API,
        check=lambda row: called.append("check"),
        after=lambda row, before: called.append("after"),
    )

    assert called == []
    assert not AuditEvent.objects.exists()


# --- model_update -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_update_saves_and_audits_the_diff() -> None:
    site: Site = SiteFactory(name="Old", region="us-south", labels={"tier": "a"})

    updated = model_update(
        site,
        changes={"name": "New", "region": "us-south"},
        fields=SITE_EDITABLE,
        kind="site",
        actor="alice",
        source=Source.ADMIN,
    )

    assert Site.objects.get(pk=site.pk).name == updated.name == "New"
    event = AuditEvent.objects.get()
    assert (event.verb, event.actor_repr, event.source) == ("update", "alice", "admin")
    assert event.payload == {"changes": {"name": ["Old", "New"]}}


@pytest.mark.django_db
def test_an_unchanged_update_writes_nothing() -> None:
    site: Site = SiteFactory(name="Same", labels={"tier": "a"})
    stored = Site.objects.get(pk=site.pk)
    called: list[str] = []

    def on_change(row: Site, diff: dict[str, list[Any]]) -> list[str]:
        called.append("on_change")
        return []

    model_update(
        site,
        changes={"name": "Same", "labels": {"tier": "a"}},
        fields=SITE_EDITABLE,
        kind="site",
        actor="alice",
        source=Source.API,
        on_change=on_change,
        after=lambda row, diff: called.append("after"),
    )

    assert Site.objects.get(pk=site.pk).updated_at == stored.updated_at
    assert not AuditEvent.objects.exists()
    assert called == []


@pytest.mark.django_db
def test_a_field_outside_the_list_is_invalid_naming_it() -> None:
    site: Site = SiteFactory()

    with pytest.raises(Invalid, match="these site fields cannot be changed here: code, state"):
        model_update(
            site,
            changes={"code": "XX-1", "state": "active"},
            fields=SITE_EDITABLE,
            kind="site",
            actor="a",
            source="api",
        )

    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_a_value_the_models_validators_refuse_is_invalid_naming_the_field_and_writes_nothing() -> None:
    site: Site = SiteFactory(labels={"tier": "a"})

    with pytest.raises(Invalid) as refused:
        model_update(
            site, changes={"labels": {"bad key!": 1}}, fields=SITE_EDITABLE, kind="site", actor="a", source="api"
        )

    assert "labels" in refused.value.errors
    assert Site.objects.get(pk=site.pk).labels == {"tier": "a"}
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_a_rule_on_the_change_may_refuse_it_or_add_to_the_record() -> None:
    site: Site = SiteFactory(name="Old", region="us-south")

    def no_renames(row: Site, diff: dict[str, list[Any]]) -> list[str]:
        if "name" in diff:
            raise Conflict(f"site {row.code} keeps its name", field="name")
        return []

    with pytest.raises(Conflict, match="keeps its name"):
        model_update(
            site,
            changes={"name": "New"},
            fields=SITE_EDITABLE,
            kind="site",
            actor="a",
            source="api",
            on_change=no_renames,
        )
    assert Site.objects.get(pk=site.pk).name == "Old"

    model_update(
        site,
        changes={"region": "us-east"},
        fields=SITE_EDITABLE,
        kind="site",
        actor="a",
        source=Source.API,
        on_change=no_renames,
        payload=lambda diff: {"changed": sorted(diff)},
    )
    assert AuditEvent.objects.get().payload == {"changed": ["region"]}


# --- validated() ------------------------------------------------------------------------------------


class _Input(serializers.Serializer):
    name = serializers.CharField(max_length=5)
    count = serializers.IntegerField(required=False)


def test_validated_returns_the_data_or_a_400_naming_the_field() -> None:
    assert validated(_Input, {"name": "ok", "count": "3"}) == {"name": "ok", "count": 3}
    assert validated(_Input, {"count": 3}, partial=True) == {"count": 3}
    with pytest.raises(exceptions.ValidationError) as refused:
        validated(_Input, {"name": "far too long"})
    assert "name" in refused.value.detail  # type: ignore[operator]


@pytest.mark.parametrize("body", [["name"], "name", 3, None])
def test_validated_refuses_a_body_that_is_not_an_object(body: object) -> None:
    with pytest.raises(exceptions.ParseError, match="must be a JSON object"):
        validated(_Input, body)


# --- field lists and enums --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("serializer_class", "expected"),
    [
        (SiteWriteSerializer, {"code", *site_services.SITE_FIELDS, "state", "reason"}),
        (NodeWriteSerializer, {"serial", "site", *site_services.NODE_FIELDS, "state", "reason"}),
        (ApplicationWriteSerializer, set(rollout_services.APPLICATION_FIELDS)),
        (ReleaseWriteSerializer, {"application", *rollout_services.RELEASE_FIELDS}),
        (RolloutPlanWriteSerializer, set(rollout_services.PLAN_FIELDS)),
    ],
)
def test_each_write_serializer_takes_the_fields_its_service_changes(
    serializer_class: type[serializers.Serializer], expected: set[str]
) -> None:
    assert set(serializer_class().fields) == expected


@pytest.mark.parametrize(
    ("form_class", "expected"),
    [
        (SiteForm, ["code", *site_services.SITE_FIELDS, "state"]),
        (NodeForm, ["serial", "site", *site_services.NODE_FIELDS, "state"]),
        (ApplicationForm, list(rollout_services.APPLICATION_FIELDS)),
        (ReleaseForm, ["application", *rollout_services.RELEASE_FIELDS]),
        (RolloutPlanForm, list(rollout_services.PLAN_FIELDS)),
    ],
)
def test_each_admin_form_edits_the_fields_its_service_changes(form_class: Any, expected: list[str]) -> None:
    assert list(form_class._meta.fields) == expected


def test_the_audit_logs_values_are_the_strings_rows_always_held() -> None:
    assert sorted(Source.values) == ["admin", "api", "beat", "command", "device", "workflow"]
    assert all(value.startswith("system:") for value in SystemActor.values)
    assert f"{Source.API}" == "api" and Source.API == "api"
