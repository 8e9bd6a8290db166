"""The node lifecycle workflows step by step against a real simulator (no control plane: simulated
machines join directly), advanced by the engine in this process; and the doors' refusals."""

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone
from kubernetes import client as k8s
from rest_framework.test import APIClient

from fleet.audit.models import AuditEvent
from fleet.workflows import dispatch
from fleet.workflows.choices import RunState
from fleet.workflows.outcomes import Done
from rollouts.models import Application
from simulator.testing import Simulator, running_simulator
from sites import devices, lifecycle, registration, services
from sites.choices import NodeState
from sites.models import Backup, Node, NodeCredential, Site
from sites.workflows import wipe as wipe_workflow
from tests.factories import UserFactory
from tests.sites.conftest import POS_RESTORE_IMAGE
from tests.sites.test_lifecycle_support import (
    FAST_SIM,
    FAST_TIMINGS,
    agent,
    at_step,
    cluster_of,
    drive,
    import_fleet,
    wipe_jobs,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    with running_simulator(sites=2, state_dir=tmp_path_factory.mktemp("sim"), extra_args=FAST_SIM) as running:
        yield running


@pytest.fixture
def fleet(sim: Simulator, db: None, settings: Any, monkeypatch: pytest.MonkeyPatch) -> list[Site]:
    """The simulated fleet imported; fast timings; no wake-up messages sent (this process advances runs)."""
    for name, value in FAST_TIMINGS.items():
        setattr(settings, name, value)
    monkeypatch.setattr(dispatch, "enqueue_advance", lambda *args, **kwargs: True)
    sites = import_fleet(sim)
    yield sites
    sim.clear_faults()


def verbs(node: Node) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="sites.node", object_id=str(node.pk))
        .order_by("id")
        .values_list("verb", flat=True)
    )


# --- provision --------------------------------------------------------------------------------------


def test_provision_waits_for_check_in_then_ready_then_labels_and_activates(sim: Simulator, fleet: list[Site]) -> None:
    site = fleet[0]
    node = services.node_create(
        actor="test", source="test", serial="G6PROV000001", site=site, hostname="prov-1", mac="94:c6:91:aa:00:01"
    )
    run = lifecycle.node_provision_request(node=node, actor=UserFactory(), source="test")

    run = drive(run, until=at_step("await_checkin"))
    assert "waiting for machine G6PROV000001 to check in" in run.steps.last().message  # type: ignore[union-attr]

    _row, token = devices.bootstrap_token_issue(site=site, actor="test", source="test")
    registration.device_register(serial=node.serial, mac=node.mac, bootstrap_token=token, facts={})
    run = drive(run, until=at_step("await_ready"))
    assert "waiting for prov-1 to join the cluster: no Node object yet" in run.steps.last().message  # type: ignore[union-attr]

    sim.unbox(site.code, serial=node.serial, mac=node.mac, hostname="prov-1")  # joins directly: no control plane
    run = drive(run)

    assert run.state == RunState.SUCCEEDED, run.error
    node.refresh_from_db()
    assert node.state == NodeState.ACTIVE
    labels = cluster_of(site).node("prov-1").labels  # type: ignore[union-attr]
    assert labels["edgefleet.io/serial"] == "G6PROV000001"
    assert labels["edgefleet.io/site"] == site.code
    assert labels["edgefleet.io/node-id"] == str(node.pk)


def test_provision_past_the_joining_deadline_leaves_the_node_broken(sim: Simulator, fleet: list[Site]) -> None:
    node = services.node_create(
        actor="test", source="test", serial="G6PROV000002", site=fleet[1], hostname="never-1", mac="94:c6:91:aa:00:02"
    )
    run = lifecycle.node_provision_request(node=node, actor="test", source="test")
    _row, token = devices.bootstrap_token_issue(site=fleet[1], actor="test", source="test")
    registration.device_register(serial=node.serial, mac=node.mac, bootstrap_token=token, facts={})
    Node.objects.filter(pk=node.pk).update(state_deadline=timezone.now())  # the machine never joins in time

    run = drive(run)

    assert run.state == RunState.FAILED
    assert "did not become a Ready node by its joining deadline" in run.error
    node.refresh_from_db()
    assert node.state == NodeState.BROKEN
    assert "joining deadline" in node.state_reason


# --- wipe -------------------------------------------------------------------------------------------


def test_wipe_of_an_unreachable_site_waits_then_fails_and_destroys_nothing(
    sim: Simulator, fleet: list[Site], settings: Any
) -> None:
    site = fleet[1]
    node = agent(site)
    devices.node_credentials_issue(node=node, actor="test", source="test")
    settings.FLEET_NODE_RUN_DEADLINES = {"node.wipe": 2.5}
    settings.KUBE_TIMEOUT_SECONDS = 0.5
    sim.add_fault("offline", site=site.code)

    run = lifecycle.node_wipe_request(node=node, actor="test", source="test", reason="stolen?", confirm=node.hostname)
    run = drive(run, seconds=15)

    assert run.state == RunState.FAILED
    assert run.error.startswith("site unreachable")
    assert run.current_step == "check_site"
    assert "site unreachable" in run.steps.filter(state="waiting").first().message  # type: ignore[union-attr]
    node.refresh_from_db()
    assert node.state == NodeState.ACTIVE
    assert NodeCredential.objects.filter(node=node, revoked_at=None).count() == 1
    sim.clear_faults()
    assert wipe_jobs(sim, site.code) == []
    assert cluster_of(site).node(node.hostname).unschedulable is False  # type: ignore[union-attr]


def test_drain_blocked_by_a_disruption_budget_fails_for_an_operator_and_recordons(
    sim: Simulator, fleet: list[Site], settings: Any
) -> None:
    site = fleet[0]
    node = agent(site)
    settings.FLEET_NODE_DRAIN_SECONDS = 1.5
    api = sim.api_client(site.code)
    k8s.CoreV1Api(api).create_namespace({"metadata": {"name": "pos"}})
    pod = {
        "metadata": {"name": "pos-db-0", "namespace": "pos", "labels": {"app": "pos-db"}},
        "spec": {"nodeName": node.hostname, "containers": [{"name": "db", "image": "postgres:16"}]},
    }
    k8s.CoreV1Api(api).create_namespaced_pod("pos", pod)
    pdb = {
        "metadata": {"name": "pos-db-pdb"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "pos-db"}}},
    }
    k8s.PolicyV1Api(api).create_namespaced_pod_disruption_budget("pos", pdb)

    run = lifecycle.node_wipe_request(node=node, actor="test", source="test", reason="refurb", confirm=node.hostname)
    run = drive(run, seconds=15, pause=0.2)

    assert run.state == RunState.FAILED
    assert run.error.startswith("drain blocked by pos/pos-db-0")
    assert "pos-db-pdb" in run.error
    waiting = run.steps.filter(step="drain", state="waiting").first()
    assert waiting is not None and "1 pod(s) blocked by a PodDisruptionBudget: pos/pos-db-0" in waiting.message
    node.refresh_from_db()
    assert node.state == NodeState.CORDONED  # given back to an operator, not left draining
    assert "drain blocked" in node.state_reason
    assert cluster_of(site).node(node.hostname).unschedulable is True  # type: ignore[union-attr]
    assert wipe_jobs(sim, site.code) == []


def test_wipe_revokes_before_the_job_and_ends_wiped_with_the_node_object_gone(
    sim: Simulator, fleet: list[Site]
) -> None:
    site = fleet[1]
    node = Node.objects.filter(site=site, role="agent", state="active").order_by("-hostname").first()
    assert node is not None
    devices.node_credentials_issue(node=node, actor="test", source="test")

    run = lifecycle.node_wipe_request(node=node, actor="test", source="test", reason="RMA", confirm=node.hostname)
    run = drive(run)

    assert run.state == RunState.SUCCEEDED, run.error
    node.refresh_from_db()
    assert node.state == NodeState.WIPED
    assert not NodeCredential.objects.filter(node=node, revoked_at=None).exists()
    history = verbs(node)
    assert history.index("revoke_credentials") < history.index("transition", history.index("revoke_credentials"))
    jobs = wipe_jobs(sim, site.code)
    assert len(jobs) == 1
    assert jobs[0]["node"] == node.hostname and jobs[0]["image"] == wipe_workflow.WIPE_IMAGE
    assert wipe_workflow.BOOTSTRAP_TOKEN_ENV not in jobs[0]["env"]  # no rejoin asked: no token handed out
    wipe = k8s.BatchV1Api(sim.api_client(site.code)).read_namespaced_job(jobs[0]["name"], "kube-system")
    assert [t.operator for t in wipe.spec.template.spec.tolerations] == ["Exists"]  # our own image, on any taint
    assert cluster_of(site).node(node.hostname) is None


def test_wipe_steps_are_idempotent(sim: Simulator, fleet: list[Site]) -> None:
    site = fleet[0]
    node = Node.objects.filter(site=site, role="server").first()
    assert node is not None
    run = lifecycle.node_wipe_request(node=node, actor="test", source="test", reason="x", confirm=node.hostname)
    ctx: dict[str, Any] = dict(run.context)
    run.refresh_from_db()

    checked = wipe_workflow.wipe_check_site(run, ctx)
    assert isinstance(checked, Done)
    assert checked.data is not None and checked.data["k8s_name"] == node.hostname
    ctx["k8s_name"] = node.hostname
    first = wipe_workflow.wipe_cordon(run, ctx)
    second = wipe_workflow.wipe_cordon(run, ctx)

    assert type(first).__name__ == type(second).__name__ == "Done"
    node.refresh_from_db()
    assert node.state == NodeState.CORDONED
    assert verbs(node).count("transition") == 1  # cordoned once
    assert cluster_of(site).node(node.hostname).unschedulable is True  # type: ignore[union-attr]
    # A step that runs again after the run went past the drain does nothing at the site.
    assert type(wipe_workflow.wipe_drain(run, {**ctx, "wipe_job": "edgefleet-wipe-1"})).__name__ == "Done"
    cluster_of(site).uncordon(node.hostname)


# --- replace ----------------------------------------------------------------------------------------


def _heartbeat(node_token: str, backups: list[dict[str, Any]]) -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {node_token}")
    return client.post("/api/v1/device/heartbeat/", {"backups": backups}, format="json")


def _backup(location: str, taken_at: dt.datetime, **claims: Any) -> dict[str, Any]:
    body = {"application": "pos", "namespace": "pos", "taken_at": taken_at.isoformat(), "location": location}
    return {**body, "size": 1, "restore_image": "edgefleet/restore:2", **claims}


def test_replace_of_a_dead_node_rehydrates_the_replacement_with_the_application_s_image(
    sim: Simulator, fleet: list[Site], pos_application: Application
) -> None:
    site = fleet[0]
    old = Node.objects.filter(site=site, role="agent", state="active").order_by("-hostname").first()
    assert old is not None
    devices.node_credentials_issue(node=old, actor="test", source="test")
    sim.add_fault("node_death", site=site.code, node=old.hostname)
    user = UserFactory(username="lead")

    run = lifecycle.node_replace_request(
        node=old, actor=user, source="test", reason="dead disk", confirm=old.hostname,
        replacement_serial="G6REPL000001", shipment_ref="UPS-1Z999", replacement_mac="94:c6:91:bb:00:01",
    )  # fmt: skip
    run = drive(run, until=at_step("await_checkin"))

    old.refresh_from_db()
    assert old.state == NodeState.RETIRED  # its hostname passes to the replacement
    assert cluster_of(site).node(old.hostname) is None  # tainted out-of-service and deleted
    assert not NodeCredential.objects.filter(node=old, revoked_at=None).exists()
    new = Node.objects.get(serial="G6REPL000001")
    assert (new.site_id, new.hostname, new.state) == (site.pk, old.hostname, NodeState.PREREGISTERED)
    recorded = AuditEvent.objects.get(verb="record_replacement")
    assert recorded.payload["shipment_ref"] == "UPS-1Z999"

    sim.clear_faults()
    _row, token = devices.bootstrap_token_issue(site=site, actor="test", source="test")
    assert _row.serials == ["G6REPL000001"]  # issued for the replacement, the site's one machine waiting
    answer = registration.device_register(serial=new.serial, mac=new.mac, bootstrap_token=token, facts={})
    sim.unbox(site.code, serial=new.serial, mac=new.mac, hostname=new.hostname)
    # The new machine reports the site's backups, choosing an image and a namespace for their restore, and
    # first tries to pin one as "the latest" with a time in the future.
    now = timezone.now()
    pinned = _heartbeat(answer.node_token, [_backup("s3://b/pos/pin", now + dt.timedelta(days=365))])
    assert pinned.status_code == 400 and "in the future" in pinned.json()["detail"]
    claims = {"restore_image": "evil/image:latest", "namespace": "kube-system"}
    reported = _heartbeat(
        answer.node_token,
        [_backup("s3://b/pos/old", now - dt.timedelta(days=1), **claims), _backup("s3://b/pos/new", now, **claims)],
    )
    assert reported.status_code == 200, reported.content
    assert set(Backup.objects.filter(site=site).values_list("namespace", flat=True)) == {"pos"}
    run = drive(run, seconds=30)

    assert run.state == RunState.SUCCEEDED, run.error
    new.refresh_from_db()
    assert new.state == NodeState.ACTIVE
    # The restore Job, as the site's API server holds it: the application's image, in its namespace,
    # pinned to the new machine, tolerating nothing.
    jobs = k8s.BatchV1Api(sim.api_client(site.code)).list_job_for_all_namespaces(
        label_selector="edgefleet.io/action=restore"
    )
    assert len(jobs.items) == 1
    job = jobs.items[0]
    pod = job.spec.template.spec
    assert job.metadata.namespace == "pos"
    assert [c.image for c in pod.containers] == [POS_RESTORE_IMAGE]
    assert pod.node_name == new.hostname
    assert not pod.tolerations
    env = {e.name: e.value for e in pod.containers[0].env}
    assert env == {"BACKUP_LOCATION": "s3://b/pos/new", "BACKUP_APPLICATION": "pos", "BACKUP_NAMESPACE": "pos"}
    restores = [j for j in sim.jobs(site.code) if j["labels"].get("edgefleet.io/action") == "restore"]
    assert [(j["namespace"], j["image"]) for j in restores] == [("pos", POS_RESTORE_IMAGE)]  # and that is what ran
    assert "restoring 1 of 1 application(s): pos" in " ".join(run.steps.values_list("message", flat=True))


def test_replace_restores_nothing_for_an_application_no_longer_stateful(
    sim: Simulator, fleet: list[Site], pos_application: Application
) -> None:
    site = fleet[1]
    old = Node.objects.filter(site=site, role="agent", state="active").order_by("hostname").first()
    assert old is not None
    Backup.objects.create(
        site=site, application="pos", namespace="pos", taken_at=timezone.now(), location="s3://b/pos/1", size=1,
        reported_at=timezone.now(),
    )  # fmt: skip
    Application.objects.filter(pk=pos_application.pk).update(stateful=False)  # changed since the report
    run = lifecycle.node_replace_request(
        node=old, actor="test", source="test", reason="dead", confirm=old.hostname,
        replacement_serial="G6REPL000002", shipment_ref="UPS-2", replacement_mac="94:c6:91:bb:00:02",
    )  # fmt: skip
    run = drive(run, until=at_step("await_checkin"))
    new = Node.objects.get(serial="G6REPL000002")
    _row, token = devices.bootstrap_token_issue(site=site, actor="test", source="test", serials=[new.serial])
    registration.device_register(serial=new.serial, mac=new.mac, bootstrap_token=token, facts={})
    sim.unbox(site.code, serial=new.serial, mac=new.mac, hostname=new.hostname)
    run = drive(run, seconds=30)

    assert run.state == RunState.SUCCEEDED, run.error
    rehydrate = run.steps.get(step="rehydrate", state="done")
    assert rehydrate.result == {"restored": [], "not_restorable": ["pos"]}
    restores = k8s.BatchV1Api(sim.api_client(site.code)).list_job_for_all_namespaces(
        label_selector="edgefleet.io/action=restore"
    )
    assert restores.items == []
